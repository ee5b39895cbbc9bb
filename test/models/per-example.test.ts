/**
 * Per-example gradients (Llama, Qwen2-style, Gemma 3, GPT-2): (1) one batched pass equals
 * batch-of-one runs (each sample alone, unpadded); (2) every selected unit matches central finite
 * differences of that sample's own loss on a tiny float64 model (for Gemma 3 this checks the VJPs
 * through its (1 + w) norms, q/k norms, score scale, embedding scale and both attention kinds);
 * (3) the training graph's gradient equals the mean of the per-example gradients.
 */
import test from 'ava';
import * as M from '../../src/models/index.ts';
import { createSession } from '../../src/runtime/index.ts';
import type { ModelConfig } from '../../src/weights/hf-config.ts';
import { relErr, row, tinyBatch, tinyGemma3, tinyGpt2, tinyLlama, tinyWeights } from './_tiny.ts';

interface Case { name: string; config: ModelConfig; lora: M.LoraSpec; weights: string[]; numLabels?: number }
const cases: Case[] = [
  { name: 'llama (GQA, all 7 targets)', config: tinyLlama(), lora: { r: 2, alpha: 4, targets: [...M.LLAMA_TARGETS] }, weights: ['model.layers.1.mlp.down_proj.weight', 'model.layers.0.self_attn.k_proj.weight', 'lm_head.weight'] },
  { name: 'llama tied, qwen2-style q/k/v bias, seq-cls head', config: tinyLlama({ model_type: 'qwen2', tie_word_embeddings: true }), lora: { r: 2, alpha: 2, targets: ['q_proj', 'v_proj'], layers: [1] }, weights: ['model.layers.0.mlp.gate_proj.weight', 'score.weight'], numLabels: 3 },
  { name: 'gemma3 (q/k norms, (1 + w) norms, sliding + global layers, window 2)', config: tinyGemma3(), lora: { r: 2, alpha: 4, targets: [...M.LLAMA_TARGETS] }, weights: ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.gate_proj.weight'], numLabels: undefined },
  { name: 'gemma3 seq-cls head', config: tinyGemma3({ layer_types: ['full_attention', 'sliding_attention'] }), lora: { r: 2, alpha: 2, targets: ['k_proj', 'o_proj', 'up_proj'] }, weights: ['score.weight'], numLabels: 3 },
  { name: 'gpt2', config: tinyGpt2(), lora: { r: 2, alpha: 4, targets: ['c_attn', 'c_proj', 'c_fc'] }, weights: ['transformer.h.0.attn.c_attn.weight', 'transformer.h.1.mlp.c_proj.weight'] },
];

function setup(c: Case, dtype: 'float32' | 'float64') {
  const graph = M.buildPerExampleGradGraph({ config: c.config, lora: c.lora, numLabels: c.numLabels, dtype, units: { lora: true, weights: c.weights, embeddingRows: true } });
  const weights = tinyWeights(graph, 3);
  const batch = tinyBatch(c.numLabels !== undefined);
  if (c.numLabels !== undefined) batch.labels = BigInt64Array.from([2, 0, 1], BigInt);
  return { graph, weights, batch };
}

for (const c of cases) {
  for (const dtype of ['float64', 'float32'] as const) {
    test(`${c.name} (${dtype}): batched per-example gradients equal batch-of-one gradients`, async (t) => {
      const { graph, weights, batch } = setup(c, dtype);
      const runner = await M.PerExampleGradRunner.create({ graph, threads: 1 });
      const all = await runner.run({ weights, batch });
      const tol = 1e-5;
      let worst = 0;
      for (let b = 0; b < batch.batch; b++) {
        const one = await runner.run({ weights, batch: row(batch, b) });
        worst = Math.max(worst, relErr([all.losses[b]], one.losses));
        for (const [unit, u] of graph.units) {
          const g1 = one.grads.get(unit)!;
          const d = unit === M.EMBEDDING_ROWS ? g1.length : u.shape.reduce((x, y) => x * y, 1);
          const start = unit === M.EMBEDDING_ROWS ? b * batch.seq * c.config.hiddenSize : b * d;
          const gb = all.grads.get(unit)!.subarray(start, start + d);
          const e = relErr(gb, g1);
          worst = Math.max(worst, e);
          if (!(e < tol)) t.fail(`${unit} sample ${b}: rel err ${e}`);
          if (unit === M.EMBEDDING_ROWS) { // padding positions get exactly zero
            const pad = all.grads.get(unit)!.subarray(start + d, (b + 1) * batch.seq * c.config.hiddenSize);
            t.true(pad.every((x) => x === 0), `padding embedding grads of sample ${b}`);
          }
        }
      }
      t.log(`${graph.units.size} units, worst rel err ${worst.toExponential(2)}`);
      t.true(worst < tol);
      await runner.release();
    });
  }

  test(`${c.name}: per-example gradients match finite differences of each sample's loss (float64)`, async (t) => {
    const { graph, weights, batch } = setup(c, 'float64');
    const runner = await M.PerExampleGradRunner.create({ graph, threads: 1 });
    const { grads } = await runner.run({ weights, batch });
    const fwd = M.buildForwardGraph({ config: c.config, lora: c.lora, numLabels: c.numLabels, dtype: 'float64', withLoss: true });
    const s = await createSession({ model: fwd.model, device: 'cpu:0', threads: 1 });
    const losses = async (w: M.WeightMap) => (await s.run(M.feedsFor(fwd, w, batch), ['loss'])).loss.data as Float64Array;
    const h = 1e-6;
    let worst = 0, checked = 0;
    for (const [unit, u] of graph.units) {
      if (unit === M.EMBEDDING_ROWS) continue;
      const d = u.shape.reduce((x, y) => x * y, 1);
      for (const i of [0, Math.floor(d / 3), d - 1]) {
        const base = weights.get(unit)!;
        const bump = (delta: number): M.WeightMap => {
          const data = Float64Array.from(base.data); data[i] += delta;
          return new Map(weights).set(unit, { dims: base.dims, data });
        };
        const [lp, lm] = [await losses(bump(h)), await losses(bump(-h))];
        for (let b = 0; b < batch.batch; b++) {
          const num = (lp[b] - lm[b]) / (2 * h), ana = grads.get(unit)![b * d + i];
          const err = Math.abs(ana - num) / (1e-8 + 1e-6 * Math.abs(num));
          worst = Math.max(worst, err); checked++;
          if (!(err <= 1)) t.fail(`${unit}[${i}] sample ${b}: analytic ${ana} vs numeric ${num}`);
        }
      }
    }
    t.log(`${checked} per-sample entries, worst normalised error ${worst.toFixed(3)}`);
    t.true(worst <= 1);
    await Promise.all([s.release(), runner.release()]);
  });
}

test('training graph gradient (sample-mean) equals the mean of per-example gradients; token-mean weights samples by target count', async (t) => {
  const config = tinyLlama(), lora: M.LoraSpec = { r: 2, alpha: 4, targets: ['q_proj', 'v_proj', 'down_proj'] };
  const pe = M.buildPerExampleGradGraph({ config, lora, dtype: 'float64' });
  const weights = tinyWeights(pe, 5);
  const batch = tinyBatch();
  const runner = await M.PerExampleGradRunner.create({ graph: pe, threads: 1 });
  const per = await runner.run({ weights, batch });
  const counts = [4, 2, 2]; // target tokens per sample after the shift
  for (const reduction of ['sample-mean', 'token-mean'] as const) {
    const tg = M.buildTrainGraph({ config, lora, dtype: 'float64', reduction });
    t.deepEqual(tg.trainable.map((x) => x.name), M.loraUnits(config, lora).map((u) => u.key));
    const s = await createSession({ model: tg.model, device: 'cpu:0', threads: 1 });
    const out = await s.run(M.feedsFor(tg, weights, batch));
    const w = reduction === 'sample-mean' ? [1, 1, 1].map((x) => x / 3) : counts.map((x) => x / 8);
    const loss = Array.from(per.losses).reduce((a, l, b) => a + w[b] * l, 0);
    t.true(Math.abs((out.loss.data[0] as number) - loss) < 1e-12, `${reduction} loss`);
    for (const { name, shape } of tg.trainable) {
      const d = shape[0] * shape[1], pg = per.grads.get(name)!;
      const mean = Array.from({ length: d }, (_, i) => w.reduce((a, wb, b) => a + wb * pg[b * d + i], 0));
      t.true(relErr(out[`grad.${name}`].data as Float64Array, mean) < 1e-10, `${reduction} ${name}`);
    }
    await s.release();
  }
  await runner.release();
});

test('gradient and training graphs compute the LM loss at target positions only: same losses as the forward graph, also for samples (or a batch) without targets', async (t) => {
  const config = tinyGemma3(), lora: M.LoraSpec = { r: 2, alpha: 4, targets: ['q_proj', 'down_proj'] };
  const pe = M.buildPerExampleGradGraph({ config, lora, dtype: 'float64' });
  const fwd = M.buildForwardGraph({ config, lora, dtype: 'float64', withLoss: true });
  const weights = tinyWeights(pe, 9);
  const runner = await M.PerExampleGradRunner.create({ graph: pe, threads: 1 });
  const s = await createSession({ model: fwd.model, device: 'cpu:0', threads: 1 });
  const batches: [string, M.Sample[]][] = [
    ['targets at scattered positions', [{ inputIds: [3, 1, 4, 1, 5, 9], labels: [-100, 1, -100, 1, -100, 9] }, { inputIds: [2, 7, 10], labels: [-100, -100, -100] }, { inputIds: [6, 5, 3, 5, 8] }]],
    ['no targets at all', [{ inputIds: [3, 1, 4], labels: [-100, -100, -100] }, { inputIds: [2, 7], labels: [-100, -100] }]],
  ];
  for (const [what, samples] of batches) {
    const batch = M.padBatch(samples, { padId: 0 });
    const per = await runner.run({ weights, batch });
    const want = (await s.run(M.feedsFor(fwd, weights, batch), ['loss'])).loss.data as Float64Array;
    t.true(relErr(per.losses, want) < 1e-12 || (want.every((x) => x === 0) && per.losses.every((x) => x === 0)), `${what}: ${[...per.losses]} vs ${[...want]}`);
    t.true(per.losses.every(Number.isFinite) && [...per.grads.values()].every((g) => g.every(Number.isFinite)), what);
  }
  t.is((await runner.run({ weights, batch: M.padBatch(batches[1][1]) })).losses.every((x) => x === 0), true, 'a batch without targets has loss 0');
  await Promise.all([s.release(), runner.release()]);
});
