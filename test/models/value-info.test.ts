/**
 * The shapes the graph builder declares for every intermediate value (serialised as ONNX value_info,
 * which ORT's allocation planner trusts) are the shapes ORT computes: each numeric dim equal, and each
 * symbolic dim ('batch', 'seq', 'targets', …) standing for one size across the whole graph. A name
 * given to two different sizes made ORT print "Shape mismatch attempting to re-use buffer" on every
 * run of the answer-token training graph (an arange of the padded target count was called 'seq').
 *
 * To see every intermediate, the test marks them all as graph outputs just before serialisation
 * (GraphBuilder.prototype.toModel is wrapped here, in the test only), runs the graph on a tiny model
 * and compares the declared shapes with the returned tensors' dims.
 */
import test from 'ava';
import * as M from '../../src/models/index.ts';
import { GraphBuilder } from '../../src/onnx/graph.ts';
import { createSession } from '../../src/runtime/index.ts';
import type { ModelConfig } from '../../src/weights/hf-config.ts';
import { tinyBatch, tinyGemma3, tinyGpt2, tinyLlama, tinyWeights } from './_tiny.ts';

type Dims = (number | string)[];
let capture: Map<string, Dims> | undefined;
const toModel = GraphBuilder.prototype.toModel;
GraphBuilder.prototype.toModel = function (this: GraphBuilder, ...args: Parameters<typeof toModel>) {
  if (capture) {
    const outs = new Set(this.outputs.map((v) => v.name));
    for (const n of this.nodes) {
      for (const o of n.outputs) {
        capture.set(o.name, [...o.shape]);
        if (!outs.has(o.name) && !this.initializers.has(o.name)) { this.outputs.push(o); outs.add(o.name); }
      }
    }
  }
  return toModel.apply(this, args);
};

interface Case { name: string; config: ModelConfig; numLabels?: number; moe?: boolean }
const cases: Case[] = [
  { name: 'llama causal LM (targets ≠ seq)', config: tinyLlama() },
  { name: 'llama classifier', config: tinyLlama(), numLabels: 3 },
  { name: 'gemma3 causal LM', config: tinyGemma3() },
  { name: 'gpt2 causal LM', config: tinyGpt2() },
  { name: 'llama LoRA-MoE causal LM', config: tinyLlama(), moe: true },
];
const kinds = ['train', 'per-example', 'forward'] as const;

for (const c of cases) {
  for (const kind of kinds) {
    if (c.moe && kind === 'per-example') continue;
    test(`${c.name}, ${kind} graph: declared intermediate shapes match ORT's`, async (t) => {
      const targets = c.config.modelType === 'gpt2' ? ['c_attn', 'c_proj'] : ['q_proj', 'v_proj', 'down_proj'];
      const adapters = c.moe ? { moe: { experts: [3, 2], r: 2, alpha: 4, topK: 2, targets } } : { lora: { r: 2, alpha: 4, targets } };
      const o = { config: c.config, numLabels: c.numLabels, ...adapters } as M.ModelOptions;
      capture = new Map();
      const spec = kind === 'train' ? M.buildTrainGraph(o) : kind === 'per-example' ? M.buildPerExampleGradGraph({ ...o, units: { lora: true } }) : M.buildForwardGraph({ ...o, withLoss: true });
      const declared = capture;
      capture = undefined;
      const batch = tinyBatch(c.numLabels !== undefined);
      const s = await createSession({ model: spec.model, device: 'cpu:0', threads: 1 });
      try {
        const out = await s.run(M.feedsFor(spec, tinyWeights(spec, 3), batch));
        const sizes = new Map<string, Map<number, string>>(); // symbol → size → a value of that size
        const wrong: string[] = [];
        let checked = 0;
        for (const [name, tensor] of Object.entries(out)) {
          const d = declared.get(name);
          if (!d) continue;
          checked++;
          const dims = tensor.dims as number[];
          if (d.length !== dims.length) { wrong.push(`${name}: declared [${d}], ORT [${dims}]`); continue; }
          d.forEach((x, i) => {
            if (typeof x === 'number') { if (x !== dims[i]) wrong.push(`${name}: declared [${d}], ORT [${dims}]`); return; }
            if (x.startsWith('?')) return; // unknown: not written to value_info
            const m = sizes.get(x) ?? sizes.set(x, new Map()).get(x)!;
            if (!m.has(dims[i])) m.set(dims[i], `${name} [${d}] = [${dims}]`);
          });
        }
        for (const [x, m] of sizes) if (m.size > 1) wrong.push(`'${x}' names ${m.size} sizes: ${[...m.values()].join('; ')}`);
        t.log(`${checked} intermediate values checked; symbols ${[...sizes].map(([x, m]) => `${x}=${[...m.keys()].join('|')}`).join(', ')}`);
        t.true(checked > 100, `only ${checked} values compared`);
        t.deepEqual(wrong, []);
      } finally {
        await s.release();
      }
    });
  }
}
