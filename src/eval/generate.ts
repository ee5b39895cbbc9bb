/**
 * Greedy generation, and BIG-bench exact-match scoring of generative documents (SCIENCE.md §3c,
 * issue 10), on LayerFlow's own ONNX graph: the log-likelihood scorer's graph and session
 * (src/eval/loglikelihood.ts, `LoglikelihoodScorer.nextTokens`), so base, LoRA, LoRA-MoE and pruned
 * models generate through exactly the path they are scored on.
 *
 *   const scorer = await LoglikelihoodScorer.create({ config, weights, moe, tokenizer, device, maxLength: 512 });
 *   const r = await generateAnswers(scorer, docs, { maxNewTokens: 32 });   // r.exactMatch, r.docs[i].generated
 *   await scorer.release();
 *
 * No KV cache: every step runs the full forward pass over context + the tokens generated so far
 * (right-padded batches of up to `batchSize` sequences; the graph applies the LM head only at each
 * row's last position, whose argmax — first index on ties — is the next token). A step costs one
 * forward pass over the sequence, so a document costs O(steps × length): fine for the short answers
 * of exact-match tasks, and the simplest path that is identical to scoring. Finished sequences leave
 * the batch and waiting ones take their place, longest contexts first.
 *
 * Prompt: the scorer's encoding of (context, "") — lm-evaluation-harness's, as fine-tuning uses it
 * (activities/shared.ts encodeAnswer): the context's trailing whitespace is moved off it, so the
 * model continues the stripped context just as it was trained to answer it, and that whitespace is
 * removed again from the front of the generated text, which is therefore the text after the
 * *original* context. Contexts longer than maxLength − maxNewTokens tokens are cut from the left.
 *
 * A sequence ends at a stop token (default the tokenizer's EOS; not part of the text), after
 * `maxNewTokens` tokens, when its text contains one of the request's `until` strings (lm-eval
 * generate_until: the text is cut before the first), or when the request's `stopWhen(text)` holds
 * (the text is kept whole). The text is re-decoded from all generated ids at every step, so a
 * character split across tokens is never cut in half.
 *
 * Generative BIG-bench documents (src/eval/bigbench.ts) stop where BIG-bench's post-processing of
 * the full output could no longer change (`bigbenchStopWhen`) and are scored by `scoreGenerations`:
 * `generated` = bigbenchPostprocess(text) per document, match = exactStrMatch(generated, targets),
 * exact_match = the mean of the matches.
 */
import { ConfigError, DataError } from '../errors.ts';
import { bigbenchPostprocess, bigbenchStopWhen, exactStrMatch, type ChoiceDoc } from './bigbench.ts';
import { trailingWhitespace, type LoglikelihoodScorer } from './loglikelihood.ts';

/** Default limit on generated tokens (BIG-bench exact-match answers are a few tokens). */
export const DEFAULT_MAX_NEW_TOKENS = 32;

/** What generation needs of a model (a LoglikelihoodScorer fits). */
export type GenerationModel = Pick<LoglikelihoodScorer, 'encode' | 'nextTokens' | 'maxLength' | 'batchSize' | 'tokenizer'>;

export interface GenerationRequest {
  context: string;
  /** Stop strings (lm-eval `until`): generation ends once the text contains one; the text is cut before it. */
  until?: readonly string[];
  /** Generation ends once this holds for the text so far (the text is kept whole). */
  stopWhen?: (text: string) => boolean;
}

export interface GenerateOptions {
  /** Most tokens generated per request (default 32); below the scorer's maxLength. */
  maxNewTokens?: number;
  /** Tokens that end a sequence (default: the tokenizer's EOS, none if it has none). */
  stopTokenIds?: readonly number[];
  signal?: AbortSignal;
  /** Called as requests finish: `done` of `total`. */
  onProgress?: (done: number, total: number) => void;
}

export interface Generation {
  /** The generated text after the original context (see the module comment). */
  text: string;
  /** Generated token ids (a stop token excluded). */
  tokenIds: number[];
  /** The prompt's token ids the model read (after left truncation). */
  contextIds: number[];
  finish: 'eos' | 'stop' | 'length';
}

interface State { ctx: number[]; gen: number[]; moved: string; text: string }

/** Greedy generation for every request; results in input order. */
export async function generateGreedy(model: GenerationModel, requests: readonly GenerationRequest[], o: GenerateOptions = {}): Promise<Generation[]> {
  const maxNew = o.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  if (!Number.isInteger(maxNew) || maxNew < 1) throw new ConfigError(`generate: maxNewTokens is ${maxNew}; expected a positive integer`);
  if (maxNew >= model.maxLength) throw new ConfigError(`generate: maxNewTokens ${maxNew} leaves no room for the context within maxLength ${model.maxLength}; expected maxNewTokens < maxLength`);
  const tok = model.tokenizer;
  const stopIds = new Set(o.stopTokenIds ?? (tok.eosId !== null ? [tok.eosId] : []));
  const room = model.maxLength - maxNew;
  const states = requests.map((r, i): State => {
    if (typeof r.context !== 'string') throw new DataError(`generate: request ${i} has no context string`);
    const { contextIds } = model.encode({ context: r.context, continuation: '' });
    return { ctx: contextIds.slice(Math.max(0, contextIds.length - room)), gen: [], moved: trailingWhitespace(r.context), text: '' };
  });
  const queue = states.map((_, i) => i).sort((a, b) => states[b].ctx.length - states[a].ctx.length || a - b);
  const results = new Array<Generation>(requests.length);
  let active: number[] = [], next = 0, done = 0;
  while (next < queue.length || active.length) {
    while (active.length < model.batchSize && next < queue.length) active.push(queue[next++]);
    o.signal?.throwIfAborted();
    const ids = await model.nextTokens(active.map((i) => [...states[i].ctx, ...states[i].gen]));
    const still: number[] = [];
    active.forEach((i, b) => {
      const s = states[i], r = requests[i];
      let finish: Generation['finish'] | undefined;
      if (stopIds.has(ids[b])) finish = 'eos';
      else {
        s.gen.push(ids[b]);
        const raw = tok.decode(s.gen);
        s.text = s.moved && raw.startsWith(s.moved) ? raw.slice(s.moved.length) : raw;
        const cut = firstOccurrence(s.text, r.until);
        if (cut !== undefined) { s.text = s.text.slice(0, cut); finish = 'stop'; }
        else if (r.stopWhen?.(s.text)) finish = 'stop';
        else if (s.gen.length >= maxNew) finish = 'length';
      }
      if (finish) {
        results[i] = { text: s.text, tokenIds: s.gen, contextIds: s.ctx, finish };
        done++;
      } else still.push(i);
    });
    if (still.length < active.length) o.onProgress?.(done, requests.length);
    active = still;
  }
  return results;
}

function firstOccurrence(text: string, until: readonly string[] | undefined): number | undefined {
  let best: number | undefined;
  for (const u of until ?? []) {
    if (!u) continue;
    const i = text.indexOf(u);
    if (i >= 0 && (best === undefined || i < best)) best = i;
  }
  return best;
}

/** What scoring needs of a generative document (src/eval/bigbench.ts ChoiceDoc with generative: true). */
export type GenerativeDocLike = Pick<ChoiceDoc, 'id' | 'context' | 'targets' | 'stopString' | 'outputRegex'>;

export interface GenerativeDocResult {
  id: string;
  /** The prompt (the document's context). */
  input: string;
  targets: string[];
  /** The generated text after the context, as generation ended. */
  raw: string;
  /** The response scored: BIG-bench's post-processing of `raw`. */
  generated: string;
  /** exact_str_match: `generated` equals a target, both stripped. */
  match: boolean;
}

export interface GenerativeResult {
  /** Mean of the per-document matches (BIG-bench exact_str_match, in [0, 1]). */
  exactMatch: number;
  n: number;
  docs: GenerativeDocResult[];
}

function targetsOf(d: GenerativeDocLike, where: string): string[] {
  if (!Array.isArray(d.targets) || d.targets.length === 0) throw new DataError(`${where}: document ${d.id} has no targets; expected a generative document (src/eval/bigbench.ts)`);
  return d.targets;
}

/** Exact match of generated texts (one per document, as generation returned them) against the documents' targets. */
export function scoreGenerations(docs: readonly GenerativeDocLike[], texts: readonly string[]): GenerativeResult {
  if (docs.length === 0) throw new DataError('scoreGenerations: no documents; expected at least one');
  if (texts.length !== docs.length) throw new DataError(`scoreGenerations: ${texts.length} generations for ${docs.length} documents`);
  const out = docs.map((d, i): GenerativeDocResult => {
    const targets = targetsOf(d, 'scoreGenerations');
    const generated = bigbenchPostprocess(texts[i], d);
    return { id: d.id, input: d.context, targets: [...targets], raw: texts[i], generated, match: exactStrMatch(generated, targets) };
  });
  return { exactMatch: out.filter((d) => d.match).length / out.length, n: out.length, docs: out };
}

/** Greedy answers to generative documents, stopped and scored the BIG-bench way. */
export async function generateAnswers(model: GenerationModel, docs: readonly GenerativeDocLike[], o: GenerateOptions = {}): Promise<GenerativeResult & { generations: Generation[] }> {
  docs.forEach((d) => targetsOf(d, 'generateAnswers'));
  const generations = await generateGreedy(model, docs.map((d) => ({ context: d.context, stopWhen: bigbenchStopWhen(d) })), o);
  return { ...scoreGenerations(docs, generations.map((g) => g.text)), generations };
}
