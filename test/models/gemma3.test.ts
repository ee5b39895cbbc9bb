/**
 * Gemma 3 270M (the real Q4_K_M GGUF, infra/fetch-models.sh; Gemma Terms of Use) through loadModel
 * and the same graph builders as Llama, against transformers' Gemma3ForCausalLM + PEFT on the same
 * file (test/fixtures/scripts/gemma3_lora_reference.py, float32, eager attention):
 *  - forward: at every position of three padded sequences the 5 largest logits, the logsumexp over
 *    the whole vocabulary and the logits of 32 fixed token ids; per-sequence causal-LM losses;
 *  - a sliding window of 6 (shorter than the sequence) against HF with the same window;
 *  - per-example gradients of every LoRA tensor (q_proj, k_proj, down_proj of layers 4 = sliding
 *    and 5 = global; the PEFT adapter the script saved) against batch-of-one PEFT gradients;
 *  - the training graph: loss and gradients = the means of the per-example ones.
 * Without the GGUF these tests fail (CI runs the fetch step first). Finite-difference checks of the
 * Gemma 3 graph on a tiny float64 model are in per-example.test.ts.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as M from '../../src/models/index.ts';
import { createSession, type Session } from '../../src/runtime/index.ts';
import { hfConfigJson, parseHfConfig } from '../../src/weights/hf-config.ts';
import { readPeftAdapter } from '../../src/weights/peft.ts';
import { rawToFloat32, readSafetensors } from '../../src/weights/safetensors.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const HOME = resolve(process.env.LAYERFLOW_HOME ?? join(ROOT, '.layerflow'));
const GGUF = join(HOME, 'models/gemma3-270m/gemma-3-270m-q4_k_m.gguf');
const FIX = join(ROOT, 'test/fixtures/models/gemma3');
const THREADS = 2;

interface Summary { loss: number; top_ids: number[][]; top_logits: number[][]; logsumexp: number[]; probe_logits: number[][] }
interface Reference {
  gguf_sha256: string;
  probe_ids: number[];
  sequences: { text: string; ids: number[]; labels: number[] }[];
  base: Summary[];
  windowed: Summary & { sliding_window: number; sequence: number };
  lora: { r: number; alpha: number; targets: string[]; layers: number[]; losses: number[] };
}

let shared: Promise<{ m: M.LoadedModel; ref: Reference; hf: { config: Record<string, any> } }> | undefined;
/** The model is loaded once for the file (about 1 GiB of float32 weights). */
function setup() {
  shared ??= (async () => {
    if (!existsSync(GGUF)) throw new Error(`Gemma 3 GGUF missing at ${GGUF}: run \`bash infra/fetch-models.sh\` (part of infra/install.sh) before the tests`);
    const ref = JSON.parse(await readFile(join(FIX, 'reference.json'), 'utf8')) as Reference;
    const hf = JSON.parse(await readFile(join(FIX, 'hf_reference.json'), 'utf8'));
    return { m: await M.loadModel({ id: 'gemma3', path: GGUF }), ref, hf };
  })();
  return shared;
}

function batchOf(ref: Reference, which: number[]): M.Batch {
  return M.padBatch(which.map((i) => ({ inputIds: ref.sequences[i].ids, labels: ref.sequences[i].labels })), { padId: 0 });
}

/** Worst differences of our logits [B, T, V] against the reference summaries of sequences `which`. */
function compareLogits(logits: Float32Array, T: number, V: number, ref: Reference, which: number[], summaries: Summary[]) {
  let top = 0, lse = 0, probe = 0;
  const argmaxMisses: string[] = [];
  which.forEach((s, b) => {
    const want = summaries[b];
    ref.sequences[s].ids.forEach((_, t) => {
      const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
      let max = -Infinity, arg = 0;
      for (let v = 0; v < V; v++) if (row[v] > max) { max = row[v]; arg = v; }
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
      lse = Math.max(lse, Math.abs(max + Math.log(sum) - want.logsumexp[t]));
      want.top_ids[t].forEach((id, j) => { top = Math.max(top, Math.abs(row[id] - want.top_logits[t][j])); });
      ref.probe_ids.forEach((id, j) => { probe = Math.max(probe, Math.abs(row[id] - want.probe_logits[t][j])); });
      // The argmax must agree unless transformers' top two are closer than the tolerance.
      if (arg !== want.top_ids[t][0] && want.top_logits[t][0] - want.top_logits[t][1] > 1e-3) argmaxMisses.push(`sequence ${s} position ${t}: ${arg} vs ${want.top_ids[t][0]}`);
    });
  });
  return { top, lse, probe, argmaxMisses };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0, worst = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / (scale + 1e-30);
}

const rssGiB = () => (process.memoryUsage().rss / 2 ** 30).toFixed(2);

async function withSession<T>(model: Uint8Array, f: (s: Session) => Promise<T>): Promise<T> {
  const s = await createSession({ model, device: 'cpu:0', threads: THREADS });
  try { return await f(s); } finally { await s.release(); }
}

test.serial('loadModel reads the Gemma 3 GGUF as a gemma3_text ModelConfig equal to transformers\' config; the tokenizer gives the reference ids', async (t) => {
  const { m, ref, hf } = await setup();
  const c = hf.config;
  t.is(m.format, 'gguf');
  t.like(m.config, {
    modelType: 'gemma3_text', hiddenSize: c.hidden_size, numLayers: c.num_hidden_layers, numHeads: c.num_attention_heads, numKvHeads: c.num_key_value_heads,
    headDim: c.head_dim, intermediateSize: c.intermediate_size, vocabSize: c.vocab_size, normEps: c.rms_norm_eps, hiddenAct: c.hidden_activation,
    ropeTheta: c.rope_parameters.full_attention.rope_theta, ropeScaling: null, slidingWindow: c.sliding_window, tieWordEmbeddings: true, attentionBias: false,
  });
  t.deepEqual(m.config.gemma3, { layerTypes: c.layer_types, ropeLocalBaseFreq: c.rope_parameters.sliding_attention.rope_theta, queryPreAttnScalar: c.query_pre_attn_scalar, embedScale: Math.sqrt(c.hidden_size) });
  t.is(m.weights.size, 2 + 18 * 13, 'embedding + final norm + 13 tensors per block (no lm_head: tied)');
  for (const s of ref.sequences) t.deepEqual(m.tokenizer.encode(s.text), s.ids, s.text);
  // The ModelConfig round-trips through an HF config.json (what prune writes for a pruned model).
  t.deepEqual(parseHfConfig(hfConfigJson(m.config)), m.config);
});

test.serial('forward: logits (top 5, logsumexp over 262,144 tokens, 32 probe ids) and per-sequence losses match transformers on a padded batch', async (t) => {
  const { m, ref } = await setup();
  const which = [0, 1, 2];
  const batch = batchOf(ref, which);
  const spec = M.buildForwardGraph({ config: m.config, withLoss: true });
  const t0 = Date.now();
  const out = await withSession(spec.model, (s) => s.run(M.feedsFor(spec, m.weights, batch)));
  t.log(`forward [3 × ${batch.seq}]: ${Date.now() - t0} ms, rss ${rssGiB()} GiB`);
  t.deepEqual(out.logits.dims, [3, batch.seq, m.config.vocabSize]);
  const e = compareLogits(out.logits.data as Float32Array, batch.seq, m.config.vocabSize, ref, which, ref.base);
  const losses = out.loss.data as Float32Array;
  const el = Math.max(...which.map((s, b) => Math.abs(losses[b] - ref.base[s].loss)));
  t.log(`max |Δ| top-5 logits ${e.top.toExponential(2)}, logsumexp ${e.lse.toExponential(2)}, probe logits ${e.probe.toExponential(2)}, loss ${el.toExponential(2)} (losses ${[...losses].map((x) => x.toFixed(4))})`);
  t.deepEqual(e.argmaxMisses, []);
  t.true(e.top < 3e-4 && e.lse < 3e-4 && e.probe < 3e-4, 'logits within 3e-4 of transformers');
  t.true(el < 1e-4, 'losses within 1e-4');
});

test.serial('sliding window: with sliding_window 6 the sliding layers drop keys 6 or more positions back, as in transformers', async (t) => {
  const { m, ref } = await setup();
  const w = ref.windowed;
  const config = { ...m.config, slidingWindow: w.sliding_window };
  const spec = M.buildForwardGraph({ config, withLoss: true });
  const batch = batchOf(ref, [w.sequence]);
  const out = await withSession(spec.model, (s) => s.run(M.feedsFor(spec, m.weights, batch)));
  const e = compareLogits(out.logits.data as Float32Array, batch.seq, m.config.vocabSize, ref, [w.sequence], [w]);
  const loss = (out.loss.data as Float32Array)[0];
  t.log(`window ${w.sliding_window}: loss ${loss.toFixed(5)} vs ${w.loss.toFixed(5)} (unwindowed ${ref.base[w.sequence].loss.toFixed(5)}); max |Δ| top-5 ${e.top.toExponential(2)}, logsumexp ${e.lse.toExponential(2)}, probe ${e.probe.toExponential(2)}`);
  t.true(Math.abs(w.loss - ref.base[w.sequence].loss) > 0.1, 'the window matters for this sequence');
  t.deepEqual(e.argmaxMisses, []);
  t.true(e.top < 3e-4 && e.lse < 3e-4 && e.probe < 3e-4 && Math.abs(loss - w.loss) < 1e-4);
});

async function loraSetup() {
  const { m, ref } = await setup();
  const spec: M.LoraSpec = { r: ref.lora.r, alpha: ref.lora.alpha, targets: ref.lora.targets, layers: ref.lora.layers };
  const adapter = await readPeftAdapter(join(FIX, 'adapter'));
  const weights = M.loraToWeights(adapter.weights, new Map(m.weights));
  const { tensors } = await readSafetensors(join(FIX, 'lora_grads.safetensors'));
  const grads = new Map([...tensors].map(([k, v]) => [k, { shape: v.shape, values: rawToFloat32(v, k) }]));
  return { m, ref, spec, adapter, weights, grads };
}

test.serial('per-example LoRA gradients (sliding layer 4, global layer 5) match PEFT batch-of-one gradients', async (t) => {
  const { m, ref, spec, adapter, weights, grads } = await loraSetup();
  const units = M.loraUnits(m.config, spec);
  t.deepEqual([...adapter.weights.keys()].sort(), M.loraModules(m.config, spec).map((x) => x.name).sort(), 'the PEFT adapter has exactly our LoRA modules');
  t.deepEqual([...adapter.config.targetModules].sort(), [...spec.targets].sort());
  const graph = M.buildPerExampleGradGraph({ config: m.config, lora: spec });
  const runner = await M.PerExampleGradRunner.create({ graph, threads: THREADS });
  const batch = batchOf(ref, [0, 1, 2]);
  const t0 = Date.now();
  const res = await runner.run({ weights, batch }).finally(() => runner.release());
  t.log(`per-example gradients [3 × ${batch.seq}], ${units.length} LoRA tensors: ${Date.now() - t0} ms, rss ${rssGiB()} GiB`);
  const el = relErr(res.losses, ref.lora.losses);
  let worst = 0;
  const bad: string[] = [];
  t.is(grads.size, units.length);
  for (const u of units) {
    const e = grads.get(`grad.${u.key}`);
    if (!e) { bad.push(`no reference for ${u.key}`); continue; }
    t.deepEqual(e.shape, [3, ...u.shape], u.key);
    const d = u.shape[0] * u.shape[1], got = res.grads.get(u.key)!;
    for (let b = 0; b < 3; b++) {
      const err = relErr(got.subarray(b * d, (b + 1) * d), e.values.subarray(b * d, (b + 1) * d));
      worst = Math.max(worst, err);
      if (!(err < 5e-4)) bad.push(`${u.key} sample ${b}: rel err ${err}`);
    }
  }
  t.log(`losses rel err ${el.toExponential(2)}; worst per-sample gradient rel err ${worst.toExponential(2)} (max |Δ| / max |reference| per tensor and sample)`);
  t.deepEqual(bad, []);
  t.true(el < 1e-5);
});

test.serial('LoRA training graph: loss and gradients are the means of the per-example reference ones', async (t) => {
  const { m, ref, spec, weights, grads } = await loraSetup();
  const graph = M.buildTrainGraph({ config: m.config, lora: spec });
  const batch = batchOf(ref, [0, 1, 2]);
  const out = await withSession(graph.model, (s) => s.run(M.feedsFor(graph, weights, batch)));
  const meanLoss = ref.lora.losses.reduce((a, b) => a + b, 0) / 3;
  const loss = (out.loss.data as Float32Array)[0];
  let worst = 0;
  for (const p of graph.trainable) {
    const e = grads.get(`grad.${p.name}`)!, d = e.values.length / 3;
    const mean = Float64Array.from({ length: d }, (_, i) => (e.values[i] + e.values[d + i] + e.values[2 * d + i]) / 3);
    worst = Math.max(worst, relErr(out[`grad.${p.name}`].data as Float32Array, mean));
  }
  t.log(`train loss ${loss.toFixed(5)} vs mean ${meanLoss.toFixed(5)}; worst gradient rel err ${worst.toExponential(2)} over ${graph.trainable.length} tensors; rss ${rssGiB()} GiB`);
  t.is(graph.trainable.length, 12);
  t.true(Math.abs(loss - meanLoss) < 1e-4 && worst < 5e-4);
});
