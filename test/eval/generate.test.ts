/**
 * Greedy generation and exact-match scoring (src/eval/generate.ts, issue 10):
 *  - tiny-llama's greedy tokens equal Hugging Face transformers' `generate(do_sample=False)` (fixture
 *    test/fixtures/eval/generate_tiny-llama.json, made by test/fixtures/scripts/eval_generate.py),
 *    with the prompts tokenised and left-truncated the same way, run batched;
 *  - with LoRA and LoRA-MoE adapters, every generated token is the argmax of the plain forward
 *    graph's full-sequence logits (an independent path: [B, T, V] logits, argmax on the host), and
 *    batch size does not change the tokens;
 *  - stopping (EOS, `until`, `stopWhen`, the token limit), the moved context whitespace, left
 *    truncation and progress on a scripted fake model;
 *  - BIG-bench post-processing and exact_str_match against BIG-bench's own functions (fixture);
 *  - a generative document's training sample (first target + EOS) after the same prompt tokens;
 *  - the benchmark stage on a generative dataset: exact_match recomputed from benchmark.json, and
 *    progress heartbeats on the generative and multiple-choice paths.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError } from '../../src/errors.ts';
import { bigbenchPostprocess, bigbenchStopWhen, exactStrMatch, pyStrip, type ChoiceDoc } from '../../src/eval/bigbench.ts';
import { generateAnswers, generateGreedy, scoreGenerations, type GenerationModel } from '../../src/eval/generate.ts';
import { encodeRequest, LoglikelihoodScorer, type LoglikelihoodTokenizer } from '../../src/eval/loglikelihood.ts';
import * as M from '../../src/models/index.ts';
import { createSession } from '../../src/runtime/index.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import type { StageContext } from '../../src/store/stage-context.ts';
import { benchmarkChoice, ChoiceBenchmarkSettings } from '../../activities/benchmark-choice.ts';
import { encodeAnswer, type ChoiceDataset } from '../../activities/shared.ts';
import { loadHfTokenizer } from '../../src/tokenize/tokenizer.ts';
import { tinyLlama } from '../models/_tiny.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const TINY = join(ROOT, 'configs/models/tiny-llama');

interface Fixture {
  max_new_tokens: number; max_length: number; eos_id: number;
  bigbench: {
    object_counting: { documents: number; sha256: string; first: { context: string; targets: string[] }[]; stop_string: string | null; output_regex: string };
    postprocess: { text: string; stop_string: string | null; output_regex: string | null; targets: string[]; response: string; exact_str_match: number }[];
  };
  generations: { context: string; context_ids: number[]; token_ids: number[]; finish: 'eos' | 'length'; text: string; min_margin: number }[];
}
const fixture = async (): Promise<Fixture> => JSON.parse(await readFile(join(ROOT, 'test/fixtures/eval/generate_tiny-llama.json'), 'utf8')) as Fixture;

test('tiny-llama: greedy tokens equal transformers generate(do_sample=False), batched, with left truncation', async (t) => {
  const ref = await fixture();
  const m = await M.loadModel({ id: 'tiny', path: TINY });
  t.is(ref.max_length, m.config.maxPositions);
  t.is<number | null, number | null>(ref.eos_id, m.tokenizer.eosId);
  const scorer = await LoglikelihoodScorer.create({ config: m.config, weights: m.weights, tokenizer: m.tokenizer, batchSize: 3, threads: 2 });
  try {
    const t0 = performance.now();
    const progress: number[] = [];
    const got = await generateGreedy(scorer, ref.generations.map((g) => ({ context: g.context })), { maxNewTokens: ref.max_new_tokens, onProgress: (done, total) => { t.is(total, ref.generations.length); progress.push(done); } });
    t.log(`${got.length} prompts × ≤ ${ref.max_new_tokens} tokens in ${(performance.now() - t0).toFixed(0)} ms (no KV cache); smallest top-2 logit margin in the reference ${Math.min(...ref.generations.map((g) => g.min_margin)).toExponential(2)}`);
    got.forEach((g, i) => {
      const r = ref.generations[i];
      t.deepEqual(g.contextIds, r.context_ids, `prompt ${i}: context tokens`);
      t.deepEqual(g.tokenIds, r.token_ids, `prompt ${i}: ${JSON.stringify(g.text)} vs ${JSON.stringify(r.text)}`);
      t.is(g.finish, r.finish);
    });
    t.true(ref.generations.some((g) => g.context_ids.length === ref.max_length - ref.max_new_tokens), 'one prompt is left-truncated');
    // The text is the decoded tokens after the original context: the context's trailing space, moved
    // off the prompt, is taken off the front of the generation again.
    t.is(ref.generations[0].context.slice(-1), ' ');
    t.is(got[0].text, m.tokenizer.decode(got[0].tokenIds).slice(1));
    t.is(got[4].text, m.tokenizer.decode(got[4].tokenIds));
    t.deepEqual(progress.at(-1), ref.generations.length);
  } finally {
    await scorer.release();
  }
});

test('LoRA and LoRA-MoE adapters: each generated token is the argmax of the forward graph logits; batch size does not matter', async (t) => {
  const config = tinyLlama({ vocab_size: 11, max_position_embeddings: 16 });
  const tok: LoglikelihoodTokenizer = { encode: (s) => [...s].map((ch) => Number(ch)), decode: (ids) => Array.from(ids).join(','), bosId: 10, eosId: null };
  const contexts = ['314', '27', '9265358979', '', '8'];
  const lora: M.LoraSpec = { r: 2, alpha: 4, targets: ['q_proj', 'v_proj', 'down_proj'] };
  const moe: M.MoeSpec = { r: 2, alpha: 4, targets: ['q_proj', 'up_proj'], experts: [3, 2], topK: 2 };
  for (const adapters of [{}, { lora }, { moe }] as { lora?: M.LoraSpec; moe?: M.MoeSpec }[]) {
    const fwd = M.buildForwardGraph({ config, ...adapters });
    const weights = M.randomWeights(fwd.weightInputs, 11, 0.8);
    const session = await createSession({ model: fwd.model, device: 'cpu:0', threads: 1 });
    const scorers = await Promise.all([1, 2].map((batchSize) => LoglikelihoodScorer.create({ config, ...adapters, weights, tokenizer: tok, batchSize, maxLength: 12, threads: 1 })));
    try {
      const [one, two] = await Promise.all(scorers.map((s) => generateGreedy(s, contexts.map((context) => ({ context })), { maxNewTokens: 5 })));
      t.deepEqual(two.map((g) => g.tokenIds), one.map((g) => g.tokenIds), JSON.stringify(adapters));
      for (const [i, g] of one.entries()) {
        t.is(g.tokenIds.length, 5);
        t.is(g.finish, 'length');
        // Independent reference: one unpadded forward pass of context + generated tokens, [T, V] logits, argmax on the host.
        const seq = [...g.contextIds, ...g.tokenIds];
        t.deepEqual(g.contextIds, contexts[i] === '' ? [10] : tok.encode(contexts[i]).slice(-7)); // left-truncated to 12 − 5
        const out = await session.run(M.feedsFor(fwd, weights, M.padBatch([{ inputIds: seq }])));
        const logits = out.logits.data as Float32Array, V = 11;
        for (let k = 0; k < g.tokenIds.length; k++) {
          const p = g.contextIds.length - 1 + k;
          const row = Array.from(logits.subarray(p * V, (p + 1) * V));
          t.is(g.tokenIds[k], row.indexOf(Math.max(...row)), `${JSON.stringify(adapters)} context ${i}, step ${k}`);
        }
        t.is(g.text, g.tokenIds.join(','));
      }
    } finally {
      await session.release();
      await Promise.all(scorers.map((s) => s.release()));
    }
  }
});

/** A scripted model over a character tokenizer (id = char code, EOS 0): after a context it "says" its script, then EOS. */
function fakeModel(scripts: Record<string, string>, o: { batchSize?: number; maxLength?: number } = {}): GenerationModel & { calls: number[][][] } {
  const tokenizer: LoglikelihoodTokenizer = { encode: (s) => [...s].map((c) => c.codePointAt(0)!), decode: (ids) => String.fromCodePoint(...Array.from(ids)), bosId: 1, eosId: 0 };
  const calls: number[][][] = [];
  return {
    tokenizer, batchSize: o.batchSize ?? 2, maxLength: o.maxLength ?? 64, calls,
    encode: (req) => encodeRequest(tokenizer, req),
    nextTokens: async (seqs) => {
      calls.push(seqs.map((s) => [...s]));
      return seqs.map((s) => {
        const text = tokenizer.decode(s);
        const key = Object.keys(scripts).filter((k) => text.startsWith(k)).sort((a, b) => b.length - a.length)[0];
        if (key === undefined) throw new Error(`no script for ${JSON.stringify(text)}`);
        const ch = scripts[key][text.length - key.length];
        return ch === undefined ? 0 : ch.codePointAt(0)!;
      });
    },
  };
}

test('stopping: EOS, until (cut before), stopWhen (kept whole), the token limit; moved whitespace; left truncation; progress', async (t) => {
  // Contexts as the model reads them (trailing whitespace moved off) → what it generates.
  const model = fakeModel({ 'Q: a\nA:': ' four\nQ: next', 'Q: b\nA:': ' 12. And', 'x': 'yz', 'long': '!' });
  const reqs = [
    { context: 'Q: a\nA: ', until: ['\n'] },
    { context: 'Q: b\nA: ', stopWhen: bigbenchStopWhen({}) },
    { context: 'x' },
    { context: 'Q: a\nA: ' },
  ];
  const progress: [number, number][] = [];
  const g = await generateGreedy(model, reqs, { maxNewTokens: 6, onProgress: (d, n) => progress.push([d, n]) });
  t.deepEqual(g.map((x) => [x.text, x.finish]), [['four', 'stop'], ['12.', 'stop'], ['yz', 'eos'], ['four\n', 'length']]);
  t.deepEqual(g[2].tokenIds, [121, 122]); // EOS not kept
  t.is(g[3].tokenIds.length, 6);
  t.deepEqual(g[0].contextIds, model.tokenizer.encode('Q: a\nA:'));
  t.true(model.calls.every((c) => c.length <= 2), 'at most batchSize sequences per step');
  t.deepEqual(progress.at(-1), [4, 4]);
  t.true(progress.every(([d], i) => i === 0 || d > progress[i - 1][0]));
  // The longest contexts are generated first; a finished sequence's place is taken by a waiting one.
  t.deepEqual(model.calls[0].map((s) => model.tokenizer.decode(s)), ['Q: a\nA:', 'Q: b\nA:']);
  // Left truncation to maxLength − maxNewTokens; maxNewTokens must leave room.
  const small = fakeModel({ 'ong': '!' }, { maxLength: 6 });
  const [tr] = await generateGreedy(small, [{ context: 'long' }], { maxNewTokens: 3 });
  t.deepEqual([small.tokenizer.decode(tr.contextIds), tr.text, tr.finish], ['ong', '!', 'eos']);
  await t.throwsAsync(generateGreedy(small, [{ context: 'long' }], { maxNewTokens: 6 }), { instanceOf: ConfigError, message: /maxNewTokens 6 leaves no room .* maxLength 6/ });
  await t.throwsAsync(generateGreedy(small, [{ context: 'x' }], { maxNewTokens: 0 }), { instanceOf: ConfigError, message: /maxNewTokens is 0/ });
  t.deepEqual(await generateGreedy(small, [], { maxNewTokens: 3 }), []);
  // An aborted signal stops generation.
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(generateGreedy(model, reqs, { signal: ac.signal }), { any: true, name: 'AbortError' });
});

test('BIG-bench post-processing and exact_str_match agree with BIG-bench 1.0.0 (postprocess_output, exact_str_match_fn)', async (t) => {
  const ref = (await fixture()).bigbench;
  for (const c of ref.postprocess) {
    const f = { ...(c.stop_string !== null ? { stopString: c.stop_string } : {}), ...(c.output_regex !== null ? { outputRegex: c.output_regex } : {}) };
    // json_task hands the default regex to the model when the task sets neither; a document leaves it out.
    const doc = c.stop_string === null && c.output_regex === ref.object_counting.output_regex ? {} : f;
    const response = bigbenchPostprocess(c.text, doc);
    t.is(response, c.response, JSON.stringify(c));
    // BIG-bench compares unstripped (`response in target`); LayerFlow strips both sides: the same
    // verdict wherever stripping changes neither side, and a match for a leading-space answer.
    const unstripped = c.targets.includes(response);
    t.is(unstripped, c.exact_str_match === 1, JSON.stringify(c));
    if (pyStrip(response) === response && c.targets.every((x) => pyStrip(x) === x)) t.is(exactStrMatch(response, c.targets), unstripped, JSON.stringify(c));
  }
  t.true(ref.postprocess.some((c) => c.exact_str_match === 0 && exactStrMatch(c.response, c.targets)), 'a case only the stripped comparison accepts (" three")');
  t.true(exactStrMatch(' 3 ', ['three', '3']));
  t.false(exactStrMatch('Three', ['three', '3']));
  t.false(exactStrMatch('', ['x']));
  t.true(exactStrMatch('\u2003x\x1c', ['x'])); // Python's whitespace set
  // Stopping early never changes the post-processed response: stopWhen holds only once it is settled.
  const stopDefault = bigbenchStopWhen({})!, stopNl = bigbenchStopWhen({ stopString: '\n' })!;
  t.false(stopDefault(' thr'));
  t.false(stopDefault('\n\n')); // nothing matched yet: BIG-bench's findall would skip the newlines
  t.true(stopDefault(' three\n'));
  t.false(stopNl('\nabc')); // a stop_string at index 0 cuts nothing
  t.false(stopNl('\nabc\n')); // nor any later one: BIG-bench's str.find finds the first
  t.true(stopNl('abc\n'));
  t.is(bigbenchStopWhen({ outputRegex: '\\d+' }), undefined);
});

test('a generative document trains on its first target + EOS after the prompt generation reads (encodeAnswer)', async (t) => {
  const tok = await loadHfTokenizer(TINY);
  const gen: ChoiceDoc = { id: 'g', context: '\nQ: How many?\nA: ', options: ['three'], gold: [0], generative: true, targets: ['three', '3'] };
  const s = encodeAnswer(tok, gen, 64);
  const prompt = tok.encode('\nQ: How many?\nA:');
  const answer = tok.encode('\nQ: How many?\nA: three').slice(prompt.length);
  t.deepEqual(s.inputIds, [...prompt, ...answer, tok.eosId!]);
  t.deepEqual(s.labels, [...prompt.map(() => -100), ...answer, tok.eosId!]);
  // The prompt is exactly what generation feeds the model for this context.
  const model: GenerationModel = { tokenizer: tok, batchSize: 1, maxLength: 64, encode: (r) => encodeRequest(tok, r), nextTokens: async (seqs) => seqs.map(() => tok.eosId!) };
  const [g] = await generateGreedy(model, [{ context: gen.context }], { maxNewTokens: 4 });
  t.deepEqual(g.contextIds, prompt);
  t.deepEqual([g.text, g.finish], ['', 'eos']);
  // A multiple-choice document: the option's tokens only, as before.
  const mc = encodeAnswer(tok, { id: 'm', context: gen.context, options: ['three', 'four'], gold: [1] }, 64);
  t.deepEqual(mc.inputIds, [...prompt, ...tok.encode('\nQ: How many?\nA: four').slice(prompt.length)]);
});

const doc = (id: string, context: string, targets: string[]): ChoiceDoc => ({ id, context, options: [targets[0]], gold: [0], generative: true, targets });

test('scoreGenerations / generateAnswers: per-document response and match, exact_match their mean', async (t) => {
  const docs = [doc('a', 'Q: a\nA: ', ['four', '4']), doc('b', 'Q: b\nA: ', ['12']), { ...doc('c', 'x', ['y']), stopString: 'z' }];
  const model = fakeModel({ 'Q: a\nA:': ' four\nQ: next', 'Q: b\nA:': ' 13. And', 'x': 'yz!' });
  const r = await generateAnswers(model, docs, { maxNewTokens: 8 });
  t.deepEqual(r.docs.map((d) => [d.id, d.raw, d.generated, d.match]), [['a', 'four\n', 'four', true], ['b', '13.', '13', false], ['c', 'yz', 'yz', false]]);
  t.is(r.exactMatch, 1 / 3);
  t.deepEqual(r.docs[0].targets, ['four', '4']);
  t.is(r.docs[0].input, 'Q: a\nA: ');
  t.deepEqual(scoreGenerations(docs, ['4', ' 12 ', 'yz']).docs.map((d) => d.match), [true, true, false]);
  t.throws(() => scoreGenerations(docs, ['x']), { instanceOf: DataError, message: /1 generations for 3 documents/ });
  t.throws(() => scoreGenerations([], []), { instanceOf: DataError, message: /no documents/ });
  await t.throwsAsync(generateAnswers(model, [{ id: 'mc', context: 'Q', options: ['a', 'b'], gold: [0] } as ChoiceDoc]), { instanceOf: DataError, message: /document mc has no targets/ });
});

async function stageCtx(settings: ChoiceBenchmarkSettings, ds: ChoiceDataset, beats: unknown[]): Promise<StageContext<ChoiceBenchmarkSettings> & { cleanup(): Promise<void> }> {
  const home = await mkdtemp(join(tmpdir(), 'lf-generate-'));
  const store = new ArtifactStore(join(home, 'store'));
  const inputs: StageContext['inputs'] = {};
  const put = async (name: string, files: Record<string, string | Uint8Array>) => {
    const m = await store.commit({ key: `k-${name}`, parts: { stage: name, version: 1, slice: {}, upstream: {} }, kind: 'x', files });
    inputs[name] = { key: m.key, stage: name, kind: 'x', files: m.files };
  };
  await put('data', { 'dataset.json': JSON.stringify(ds) });
  // The "pruned" model: tiny-llama's own config and weights.
  await put('prune', { 'config.json': await readFile(join(TINY, 'config.json'), 'utf8'), 'model.safetensors': new Uint8Array(await readFile(join(TINY, 'model.safetensors'))) });
  return {
    sweep: 's', cellId: 'c', stage: 'benchmark_pruned', key: 'k', inputs, store, home, device: 'cpu:0', attempt: 1,
    heartbeat: (d) => { beats.push(d); }, signal: new AbortController().signal, settings, slice: { model: { id: 'tiny', path: TINY } },
    cleanup: () => rm(home, { recursive: true, force: true }),
  };
}

test('benchmark stage on a generative task: exact_match recomputable from benchmark.json; progress heartbeats on both paths', async (t) => {
  const ref = await fixture();
  const gens = [ref.generations[0], ref.generations[1], ref.generations[5]];
  // What tiny-llama generates (the fixture's 12 greedy tokens; none of . ? ! ; or a newline, so the
  // default output_regex keeps it all), after the original context: the moved space taken off.
  const after = gens.map((g) => (g.context.endsWith(' ') ? g.text.slice(1) : g.text));
  t.deepEqual(after.slice(0, 2), ['I say, I say, I say,', 'I say, I say, and the L']);
  const docs = [doc('oc/0', gens[0].context, ['three', '3']), doc('oc/1', gens[1].context, ['nine', after[1]]), doc('w', gens[2].context, ['x'])];
  const ds: ChoiceDataset = { kind: 'choice', task: 'gen', generative: true, train: [], influence: [], evaluation: docs, noisyIds: [], noise: 0, duplicatesRemoved: 0 };
  const beats: unknown[] = [];
  const ctx = await stageCtx(ChoiceBenchmarkSettings.parse({ maxLength: 128, perplexityWindows: 0, batchSize: 2, maxNewTokens: ref.max_new_tokens }), ds, beats);
  try {
    const out = await benchmarkChoice(ctx);
    const bench = JSON.parse(out.files!['benchmark.json'] as string) as { generative: boolean; maxNewTokens: number; docs: { id: string; input: string; targets: string[]; generated: string; match: boolean }[] };
    t.true(bench.generative);
    t.is(bench.maxNewTokens, ref.max_new_tokens);
    t.deepEqual(bench.docs.map((d) => [d.id, d.input, d.targets]), docs.map((d) => [d.id, d.context, d.targets]));
    t.deepEqual(bench.docs.map((d) => d.generated), after);
    // Recompute the metric from the artifact alone: strip, compare with every target.
    const recomputed = bench.docs.map((d) => d.targets.some((x) => x.trim() === d.generated.trim()));
    t.deepEqual(bench.docs.map((d) => d.match), recomputed);
    t.deepEqual(recomputed, [false, true, false]);
    t.deepEqual(out.metrics, { exact_match: 1 / 3, documents: 3 });
    const progress = beats.map((b) => (b as { progress: { done: number; total: number; unit: string } }).progress);
    t.deepEqual(progress[0], { done: 0, total: 3, unit: 'doc' });
    t.deepEqual(progress.at(-1), { done: 3, total: 3, unit: 'doc' });
    t.true(beats.every((b) => (b as { stage: string }).stage === 'benchmark_pruned'));
    // Multiple choice: the same metrics as before, and progress per 8 documents.
    beats.length = 0;
    const { generative: _g, ...rest } = ds;
    const mc: ChoiceDataset = { ...rest, evaluation: Array.from({ length: 9 }, (_, i) => ({ id: `m${i}`, context: `Q: ${i}\nA: `, options: ['yes', 'no'], gold: [i % 2] })) };
    const ctx2 = await stageCtx(ChoiceBenchmarkSettings.parse({ maxLength: 128, perplexityWindows: 0 }), mc, beats);
    try {
      const r = await benchmarkChoice(ctx2);
      t.deepEqual(Object.keys(r.metrics!).sort(), ['acc', 'acc_norm', 'documents']);
      t.deepEqual(beats.map((b) => (b as { progress: unknown }).progress), [{ done: 8, total: 9, unit: 'doc' }, { done: 9, total: 9, unit: 'doc' }]);
      t.deepEqual(beats.map((b) => (b as { docs: number }).docs), [8, 16]); // the fields it sent before are kept
    } finally {
      await ctx2.cleanup();
    }
  } finally {
    await ctx.cleanup();
  }
});
