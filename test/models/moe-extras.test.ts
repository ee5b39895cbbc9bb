/**
 * LoRA-MoE (single-expert layers reduce to LoRA; router/expert gradients vs finite differences),
 * Wanda activation norms, RoPE scaling vs transformers, PEFT adapter round trip, config errors.
 */
import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.ts';
import * as M from '../../src/models/index.ts';
import { ropeInvFreq } from '../../src/models/ops.ts';
import { createSession } from '../../src/runtime/index.ts';
import { readPeftAdapter, writePeftAdapter } from '../../src/weights/peft.ts';
import { relErr, tinyBatch, tinyGpt2, tinyLlama, tinyWeights } from './_tiny.ts';

const logitsOf = async (spec: M.GraphSpec, w: M.WeightMap, batch = tinyBatch()) => {
  const s = await createSession({ model: spec.model, device: 'cpu:0', threads: 1 });
  const out = await s.run(M.feedsFor(spec, w, batch));
  await s.release();
  return out;
};

test('LoRA-MoE with one expert per layer equals plain LoRA (top-1, gate = 1)', async (t) => {
  const config = tinyLlama(), targets = ['q_proj', 'up_proj'];
  const lora: M.LoraSpec = { r: 2, alpha: 4, targets };
  const moe: M.MoeSpec = { r: 2, alpha: 4, targets, experts: [1, 1] };
  const fl = M.buildForwardGraph({ config, lora, dtype: 'float64' }), fm = M.buildForwardGraph({ config, moe, dtype: 'float64' });
  const w = tinyWeights(fl, 2);
  for (const [k, v] of M.initMoe({ config, moe, seed: 4 })) w.set(k, v); // routers
  for (const m of M.loraModules(config, lora)) { // experts = the LoRA factors
    w.set(M.moeKey(m.name, 'lora_A'), { dims: [1, 2, m.inF], data: w.get(`base_model.model.${m.name}.lora_A.weight`)!.data });
    w.set(M.moeKey(m.name, 'lora_B'), { dims: [1, m.outF, 2], data: w.get(`base_model.model.${m.name}.lora_B.weight`)!.data });
  }
  const [a, b] = [await logitsOf(fl, w), await logitsOf(fm, w)];
  t.true(relErr(b.logits.data as Float64Array, a.logits.data as Float64Array) < 1e-12);
  t.deepEqual(fm.outputNames, ['logits', 'moe_aux']);
});

test('LoRA-MoE training graph: router and expert gradients (top-2 of 3 / 2 experts, load balancing) match finite differences', async (t) => {
  const config = tinyGpt2();
  const moe: M.MoeSpec = { r: 2, alpha: 4, targets: ['c_attn', 'c_fc'], experts: [3, 2] };
  const tg = M.buildTrainGraph({ config, moe, dtype: 'float64', moeAuxCoef: 0.01 });
  t.is(tg.trainable.length, 4 * 3);
  const w = tinyWeights(tg, 6);
  for (const { name, shape } of tg.trainable) w.set(name, M.randomWeights([{ name, shape }], name.length, name.includes('router') ? 2 : 0.5).get(name)!);
  const batch = tinyBatch();
  const s = await createSession({ model: tg.model, device: 'cpu:0', threads: 1 });
  const run = async (ws: M.WeightMap) => s.run(M.feedsFor(tg, ws, batch));
  const base = await run(w);
  t.true((base.loss.data[0] as number) > (base.lm_loss.data[0] as number), 'loss includes the load-balancing term');
  const h = 1e-6;
  let worst = 0;
  for (const { name, shape } of tg.trainable) {
    const d = shape.reduce((a, b) => a * b, 1);
    for (const i of [0, Math.floor(d / 2), d - 1]) {
      const bump = async (delta: number) => {
        const data = Float64Array.from(w.get(name)!.data); data[i] += delta;
        return (await run(new Map(w).set(name, { dims: shape, data }))).loss.data[0] as number;
      };
      const num = ((await bump(h)) - (await bump(-h))) / (2 * h), ana = base[`grad.${name}`].data[i] as number;
      const err = Math.abs(ana - num) / (1e-8 + 1e-5 * Math.abs(num));
      worst = Math.max(worst, err);
      if (!(err <= 1)) t.fail(`${name}[${i}]: analytic ${ana} vs numeric ${num}`);
    }
  }
  t.log(`worst normalised error ${worst.toFixed(3)}`);
  t.true(worst <= 1);
  await s.release();
});

test('Wanda activation norms: per-input-feature sums of squares over real tokens', async (t) => {
  const config = tinyGpt2({ n_layer: 1 });
  const spec = M.buildForwardGraph({ config, activationNorms: true, dtype: 'float64' });
  t.deepEqual(spec.outputNames.filter((n) => n.startsWith('act_sumsq.')), M.blockModules(config, 0).map((m) => `act_sumsq.${m.name}`));
  const w = tinyWeights(spec, 8);
  const batch = tinyBatch();
  const out = await logitsOf(spec, w, batch);
  // c_attn's input is ln_1(wte[id] + wpe[pos]): recompute it in JS for the real tokens only.
  const D = 8, wte = w.get('transformer.wte.weight')!.data, wpe = w.get('transformer.wpe.weight')!.data;
  const g = w.get('transformer.h.0.ln_1.weight')!.data, bb = w.get('transformer.h.0.ln_1.bias')!.data;
  const want = new Float64Array(D);
  for (let b = 0; b < batch.batch; b++) for (let p = 0; p < batch.seq; p++) {
    if (batch.attentionMask[b * batch.seq + p] === 0n) continue;
    const id = Number(batch.inputIds[b * batch.seq + p]);
    const x = Array.from({ length: D }, (_, k) => wte[id * D + k] + wpe[p * D + k]);
    const mu = x.reduce((a, v) => a + v, 0) / D, v = x.reduce((a, y) => a + (y - mu) ** 2, 0) / D;
    x.forEach((y, k) => { want[k] += (((y - mu) / Math.sqrt(v + 1e-5)) * g[k] + bb[k]) ** 2; });
  }
  const got = out['act_sumsq.transformer.h.0.attn.c_attn'];
  t.deepEqual(got.dims, [D]);
  t.true(relErr(got.data as Float64Array, want) < 1e-12);
  t.deepEqual(out['act_sumsq.transformer.h.0.mlp.c_proj'].dims, [config.intermediateSize]);
});

test('RoPE inverse frequencies with llama3 and linear scaling match transformers', async (t) => {
  const cases = JSON.parse(await readFile(join(import.meta.dirname, '..', 'fixtures', 'models', 'rope.json'), 'utf8'));
  for (const c of cases) {
    const mine = ropeInvFreq(c.head_dim, c.rope_theta, c);
    t.true(relErr(mine, c.inv_freq) < 1e-6, c.rope_type);
  }
  t.throws(() => ropeInvFreq(8, 1e4, { rope_type: 'yarn', factor: 2 }), { instanceOf: ConfigError });
});

test('LoRA weights round-trip through PEFT adapter files (peft.ts)', async (t) => {
  const config = tinyLlama(), lora: M.LoraSpec = { r: 2, alpha: 4, targets: ['q_proj', 'down_proj'] };
  const w = M.loraToWeights(M.initLora({ config, lora, seed: 3, bScale: 0.1 }));
  t.deepEqual([...w.keys()].sort(), M.loraUnits(config, lora).map((u) => u.key).sort());
  const dir = await mkdtemp(join(tmpdir(), 'lf-peft-'));
  try {
    await writePeftAdapter({ dir, config: M.peftConfig(lora), weights: M.weightsToLora(w) });
    const back = M.loraToWeights((await readPeftAdapter(dir)).weights);
    for (const [k, v] of w) t.deepEqual(Array.from(back.get(k)!.data), Array.from(v.data), k);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bad specs fail with ConfigError naming the problem', (t) => {
  const config = tinyLlama();
  t.throws(() => M.buildPerExampleGradGraph({ config, lora: { r: 2, alpha: 4, targets: ['c_attn'] } }), { instanceOf: ConfigError, message: /c_attn.*llama/ });
  t.throws(() => M.buildPerExampleGradGraph({ config, units: { lora: true } }), { instanceOf: ConfigError, message: /no lora spec/ });
  t.throws(() => M.buildPerExampleGradGraph({ config, units: { weights: ['model.norm.weight'] } }), { instanceOf: ConfigError, message: /model\.norm\.weight/ });
  t.throws(() => M.buildForwardGraph({ config, moe: { r: 2, alpha: 2, targets: ['q_proj'], experts: [1] } }), { instanceOf: ConfigError, message: /one per block/ });
});
