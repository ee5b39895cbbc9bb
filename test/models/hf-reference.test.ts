/**
 * Logits, per-sample losses and per-example LoRA gradients of tiny random Llama and GPT-2 models
 * against Hugging Face transformers + PEFT on the same weights and batch
 * (test/fixtures/scripts/models_hf_reference.py; reference computed in float64 by looping batch-of-one).
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as M from '../../src/models/index.ts';
import { createSession } from '../../src/runtime/index.ts';
import { SafetensorsReader } from '../../src/weights/safetensors.ts';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'models');

interface Fixture { config: Awaited<ReturnType<typeof M.loadHfModel>>['config']; weights: M.WeightMap; expected: Map<string, { shape: number[]; values: Float32Array }>; batch: M.Batch; lora: M.LoraSpec }

async function load(name: string): Promise<Fixture> {
  const d = join(DIR, name);
  const { config, weights } = await M.loadHfModel(d);
  const lora = await M.readWeights(config, [join(d, 'lora.safetensors')]);
  for (const [k, v] of lora) weights.set(k, v);
  const r = await SafetensorsReader.open(join(d, 'expected.safetensors'));
  const expected = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const k of r.names()) expected.set(k, await r.readFloat32(k));
  await r.close();
  const j = JSON.parse(await readFile(join(d, 'batch.json'), 'utf8'));
  const flat = (x: number[][]) => BigInt64Array.from(x.flat(), (v) => BigInt(v));
  const batch: M.Batch = { batch: j.input_ids.length, seq: j.input_ids[0].length, inputIds: flat(j.input_ids), attentionMask: flat(j.attention_mask), labels: flat(j.labels) };
  return { config, weights, expected, batch, lora: { r: j.lora.r, alpha: j.lora.alpha, targets: j.lora.targets } };
}

/** max |a − b| / (atol + max|b|) over the tensor: relative to the tensor's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0, worst = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / (scale + 1e-12);
}

for (const name of ['tiny-llama', 'tiny-gpt2']) {
  test(`${name}: logits and per-sample loss match transformers`, async (t) => {
    const f = await load(name);
    const spec = M.buildForwardGraph({ config: f.config, lora: f.lora, withLoss: true });
    const s = await createSession({ model: spec.model, device: 'cpu:0', threads: 1 });
    const out = await s.run(M.feedsFor(spec, f.weights, f.batch));
    t.deepEqual(out.logits.dims, f.expected.get('logits')!.shape);
    const e1 = relErr(out.logits.data as Float32Array, f.expected.get('logits')!.values);
    const e2 = relErr(out.loss.data as Float32Array, f.expected.get('loss')!.values);
    t.log(`logits rel err ${e1.toExponential(2)}, loss rel err ${e2.toExponential(2)}`);
    t.true(e1 < 1e-4 && e2 < 1e-4);
    await s.release();
  });

  test(`${name}: per-example LoRA gradients match PEFT batch-of-one gradients`, async (t) => {
    const f = await load(name);
    const graph = M.buildPerExampleGradGraph({ config: f.config, lora: f.lora });
    const runner = await M.PerExampleGradRunner.create({ graph, threads: 1 });
    const { losses, grads } = await runner.run({ weights: f.weights, batch: f.batch });
    t.true(relErr(losses, f.expected.get('loss')!.values) < 1e-4);
    const units = M.loraUnits(f.config, f.lora);
    t.is(grads.size, units.length);
    let worst = 0;
    for (const u of units) {
      const e = f.expected.get(`grad.${u.key}`);
      if (!e) { t.fail(`no reference for ${u.key}`); continue; }
      t.deepEqual(e.shape, [f.batch.batch, ...u.shape], u.key);
      const got = grads.get(u.key)!;
      // per sample: each row of [B × d] against its own reference row
      const d = u.shape[0] * u.shape[1];
      for (let b = 0; b < f.batch.batch; b++) {
        const err = relErr(got.subarray(b * d, (b + 1) * d), e.values.subarray(b * d, (b + 1) * d));
        worst = Math.max(worst, err);
        if (!(err < 2e-4)) t.fail(`${u.key} sample ${b}: rel err ${err}`);
      }
    }
    t.log(`${units.length} LoRA tensors, worst per-sample rel err ${worst.toExponential(2)}`);
    t.pass();
    await runner.release();
  });
}

test('tiny-llama: sequence-classification logits and per-example score.weight gradients match transformers', async (t) => {
  const f = await load('tiny-llama');
  f.weights.set('score.weight', { dims: f.expected.get('cls.score.weight')!.shape, data: f.expected.get('cls.score.weight')!.values });
  const labels = BigInt64Array.from(f.expected.get('cls.labels')!.values, (v) => BigInt(v));
  const batch = { ...f.batch, labels };
  const graph = M.buildPerExampleGradGraph({ config: f.config, numLabels: 2, units: { head: true } });
  const runner = await M.PerExampleGradRunner.create({ graph, threads: 1 });
  const { losses, grads } = await runner.run({ weights: f.weights, batch });
  t.true(relErr(losses, f.expected.get('cls.loss')!.values) < 1e-4);
  const eg = relErr(grads.get('score.weight')!, f.expected.get('cls.grad.score.weight')!.values);
  const fwd = M.buildForwardGraph({ config: f.config, numLabels: 2 });
  const s = await createSession({ model: fwd.model, device: 'cpu:0', threads: 1 });
  const out = await s.run(M.feedsFor(fwd, f.weights, batch));
  const el = relErr(out.logits.data as Float32Array, f.expected.get('cls.logits')!.values);
  t.log(`class logits rel err ${el.toExponential(2)}, score grads rel err ${eg.toExponential(2)}`);
  t.true(el < 1e-4 && eg < 1e-4);
  await Promise.all([s.release(), runner.release()]);
});
