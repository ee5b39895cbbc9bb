/**
 * loadModel: the committed tiny HF model folder, the real SmolLM2-135M-Instruct GGUF (installed by
 * infra/fetch-models.sh; the tests fail without it, CI runs the install step first) with a forward
 * pass that must make sensible predictions, and the errors for missing or unreadable models.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, MissingArtifactError } from '../../src/errors.ts';
import * as M from '../../src/models/index.ts';
import { createSession } from '../../src/runtime/index.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const TINY = join(ROOT, 'configs/models/tiny-llama');
const HOME = resolve(process.env.LAYERFLOW_HOME ?? join(ROOT, '.layerflow'));

function smollm2Path(): string {
  const path = M.defaultModelPath(HOME, 'smollm2-135m-instruct');
  if (!existsSync(path)) throw new Error(`SmolLM2 GGUF missing at ${path}: run \`bash infra/fetch-models.sh\` (part of infra/install.sh) before the tests`);
  return path;
}

/** Mean next-token loss (nats) over `ids`, its logits [T × V], and the greedy continuation of `ids` by `steps` tokens. */
async function run(m: M.LoadedModel, ids: number[], steps: number): Promise<{ loss: number; logits: Float32Array; greedy: number[] }> {
  const spec = M.buildForwardGraph({ config: m.config, withLoss: true });
  const s = await createSession({ model: spec.model, device: 'cpu:0' });
  try {
    const seq = [...ids];
    let loss = NaN, first: Float32Array = new Float32Array(0);
    for (let k = 0; k <= steps; k++) {
      const out = await s.run(M.feedsFor(spec, m.weights, M.padBatch([{ inputIds: seq }])));
      if (k === 0) { loss = (out.loss.data as Float32Array)[0]; first = out.logits.data as Float32Array; }
      if (k === steps) break;
      const V = m.config.vocabSize, logits = out.logits.data as Float32Array, off = (seq.length - 1) * V;
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[off + v] > logits[off + best]) best = v;
      seq.push(best);
    }
    return { loss, logits: first, greedy: seq.slice(ids.length) };
  } finally {
    await s.release();
  }
}

test('HF folder: the committed tiny-llama loads with config, weights and tokenizer', async (t) => {
  const m = await M.loadModel({ id: 'tiny', path: TINY });
  t.is(m.format, 'hf');
  t.is(m.id, 'tiny');
  t.like(m.config, { modelType: 'llama', numLayers: 4, hiddenSize: 128, numHeads: 4, numKvHeads: 2, vocabSize: 512, tieWordEmbeddings: true });
  t.deepEqual(m.weights.get('model.embed_tokens.weight')!.dims, [512, 128]);
  t.is(m.tokenizer.vocabSize, 512);
  const ids = m.tokenizer.encode('Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.');
  const { loss } = await run(m, ids, 0);
  t.log(`tiny-llama loss ${loss.toFixed(3)} (ln 512 = ${Math.log(512).toFixed(3)})`);
  t.true(loss < Math.log(512) - 1, `loss ${loss}`);
});

test('GGUF: SmolLM2-135M-Instruct loads with its config and tokenizer and predicts sensibly', async (t) => {
  const path = smollm2Path();
  const m = await M.loadModel({ id: 'smollm2', path });
  t.is(m.format, 'gguf');
  t.is(m.path, path);
  t.like(m.config, {
    modelType: 'llama', numLayers: 30, hiddenSize: 576, numHeads: 9, numKvHeads: 3, headDim: 64, intermediateSize: 1536,
    vocabSize: 49152, tieWordEmbeddings: true, ropeTheta: 100000, ropeScaling: null, maxPositions: 8192, bosTokenId: 1, eosTokenIds: [2],
  });
  t.false(m.weights.has('lm_head.weight'));
  t.is(m.weights.size, 2 + 30 * 9);
  const prompt = m.tokenizer.encode('The capital of France is');
  const { loss, greedy } = await run(m, prompt, 3);
  const text = m.tokenizer.decode(greedy);
  t.log(`loss ${loss.toFixed(3)} (ln V = ${Math.log(49152).toFixed(3)}), greedy continuation ${JSON.stringify(text)}`);
  t.regex(text, /Paris/);
  // Same GGUF through transformers (its own dequantiser, float32): loss and the top-20 logits at
  // every position (test/fixtures/scripts/models_smollm2.py).
  const ref = JSON.parse(await readFile(join(ROOT, 'test/fixtures/models/smollm2_reference.json'), 'utf8')) as { prompts: { text: string; ids: number[]; loss: number; top_ids: number[][]; top_logits: number[][] }[] };
  for (const p of ref.prompts) {
    t.deepEqual(m.tokenizer.encode(p.text), p.ids, p.text);
    const { loss: l, logits } = await run(m, p.ids, 0);
    let worst = 0;
    p.top_ids.forEach((row, pos) => row.forEach((id, j) => { worst = Math.max(worst, Math.abs(logits[pos * 49152 + id] - p.top_logits[pos][j])); }));
    t.log(`${JSON.stringify(p.text)}: loss ${l.toFixed(5)} vs transformers ${p.loss.toFixed(5)}, max |Δ top-20 logit| ${worst.toExponential(2)}`);
    t.true(Math.abs(l - p.loss) < 1e-3 && worst < 5e-4, p.text);
    p.top_ids.forEach((row, pos) => {
      let best = 0;
      for (let v = 1; v < 49152; v++) if (logits[pos * 49152 + v] > logits[pos * 49152 + best]) best = v;
      t.is(best, row[0], `${JSON.stringify(p.text)} position ${pos}: argmax`);
    });
  }
  const sentence = m.tokenizer.encode('The quick brown fox jumps over the lazy dog. It was a sunny day, and the children were playing in the park.');
  const s = await run(m, sentence, 0);
  t.log(`English sentence loss ${s.loss.toFixed(3)}`);
  t.true(s.loss < Math.log(49152) / 2, `loss ${s.loss}`);
});

test('missing or unreadable models: MissingArtifactError naming the id, the path and what was expected', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-load-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const nowhere = join(dir, 'nope');
  await t.throwsAsync(M.loadModel({ id: 'ghost', path: nowhere }), {
    instanceOf: MissingArtifactError,
    message: `model "ghost" at ${nowhere}: does not exist; expected a Hugging Face model folder (config.json, model.safetensors or model.safetensors.index.json, tokenizer.json) or a .gguf file`,
  });
  const packaged = M.defaultModelPath(dir, 'smollm2-135m-instruct');
  await t.throwsAsync(M.loadModel({ id: 'smol', path: packaged }), { instanceOf: MissingArtifactError, message: /model "smol" at .*SmolLM2-135M-Instruct.Q4_1.gguf: does not exist; .*bash infra\/fetch-models.sh/ });

  const partial = join(dir, 'partial');
  await mkdir(partial);
  await copyFile(join(TINY, 'config.json'), join(partial, 'config.json'));
  await t.throwsAsync(M.loadModel({ id: 'half', path: partial }), { instanceOf: MissingArtifactError, message: new RegExp(`^model "half" at ${partial}: the folder has no model.safetensors \\(or model.safetensors.index.json\\), tokenizer.json; expected a Hugging Face`) });

  const junk = join(dir, 'junk.gguf');
  await writeFile(junk, 'not a gguf at all, just text');
  await t.throwsAsync(M.loadModel({ id: 'junk', path: junk }), { instanceOf: MissingArtifactError, message: new RegExp(`^model "junk" at ${junk}: not a readable GGUF file \\(.*not a GGUF file`) });
  const truncated = join(dir, 'cut.gguf');
  const head = Buffer.alloc(4 << 20); // the header and the first tensors, not the rest
  const fh = await open(smollm2Path());
  await fh.read(head, 0, head.length, 0).finally(() => fh.close());
  await writeFile(truncated, head);
  await t.throwsAsync(M.loadModel({ id: 'cut', path: truncated }), { instanceOf: MissingArtifactError, message: /^model "cut" at .*cut.gguf: not a readable GGUF file \(.*truncated/ });
  const txt = join(dir, 'weights.bin');
  await writeFile(txt, 'x');
  await t.throwsAsync(M.loadModel({ id: 'bin', path: txt }), { instanceOf: MissingArtifactError, message: /model "bin" at .*weights.bin: is a file without the .gguf extension; expected/ });

  // A configuration problem keeps its class, prefixed with the model.
  const bad = join(dir, 'bad');
  await mkdir(bad);
  for (const f of ['model.safetensors', 'tokenizer.json']) await copyFile(join(TINY, f), join(bad, f));
  await writeFile(join(bad, 'config.json'), JSON.stringify({ model_type: 'bert' }));
  await t.throwsAsync(M.loadModel({ id: 'bert', path: bad }), { instanceOf: ConfigError, message: /^model "bert" at .*: .*config.json: field "model_type" is "bert"/ });
  t.throws(() => M.defaultModelPath(dir, 'gpt-5' as 'smollm2-135m-instruct'), { instanceOf: ConfigError, message: /unknown pretrained model "gpt-5"/ });
});
