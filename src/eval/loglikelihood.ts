/**
 * Option log-likelihoods the way lm-evaluation-harness computes them (SCIENCE.md §3c-§3d, STYLE.md §2),
 * on LayerFlow's own ONNX graph, for base, LoRA, LoRA-MoE and pruned models alike (the adapters are
 * graph inputs like every weight; a pruned model is its config + weights).
 *
 *   const scorer = await LoglikelihoodScorer.create({ config, weights, tokenizer, device: 'cpu:0' });
 *   const lls = await scoreChoiceDocs(scorer, docs);          // per doc, per option
 *   const { acc, accNorm } = multipleChoiceFromLoglikelihoods(docs, lls);
 *   await scorer.release();
 *
 * A request is (context, continuation); a document with k options gives k requests with
 * continuation = delimiter (default ' ') + bare option (choiceRequests). Encoding follows the
 * harness (lm_eval/api/model.py TemplateLM._encode_pair / loglikelihood, HFLM.tok_encode):
 *  - the context's trailing whitespace moves onto the continuation;
 *  - context and context + continuation are tokenised as whole strings (the tokenizer's own
 *    special-token default, unless the string already starts with the prefix token's text) and the
 *    whole string's tokens are split at the context's token count: continuation = whole[n:]. When the
 *    whole string does not start with the context's tokens (a context ending inside a word), the
 *    model still reads the context's own tokens followed by whole[n:] — the harness's rule;
 *  - an empty context becomes the prefix token (BOS, else EOS), unless the continuation already
 *    starts with it;
 *  - the input is (context + continuation) left-truncated to maxLength + 1 tokens minus the last one
 *    (maxLength defaults to config.maxPositions, as HFLM reads max_position_embeddings).
 * loglikelihood = Σ log p(continuation token | prefix); isGreedy = every continuation token is the
 * argmax (first index on ties, as torch.argmax).
 *
 * The graph (buildLoglikelihoodGraph) is the model's forward pass with the LM head applied only at the
 * scored positions and the log-softmax gathered at the target ids inside ONNX, so only [B, K]
 * log-probs and greedy ids leave the session and no [B, T, V] logits are made (V = 49152 for
 * SmolLM2). Requests are batched right-padded, longest first, and returned in input order.
 * The same session gives greedy next tokens (`nextTokens`: the greedy id at each sequence's last
 * position), which src/eval/generate.ts runs step by step for greedy generation.
 */
import { ConfigError, DataError } from '../errors.ts';
import * as O from '../onnx/index.ts';
import { GraphBuilder } from '../onnx/index.ts';
import { ModelContext, type FloatDType, type WeightMap } from '../models/context.ts';
import type { GraphSpec } from '../models/graphs.ts';
import type { LoraSpec } from '../models/lora.ts';
import { IGNORE_INDEX } from '../models/loss.ts';
import type { MoeSpec } from '../models/moe.ts';
import { feedsFor, padBatch } from '../models/runner.ts';
import { lmHead, transformer } from '../models/transformer.ts';
import { createSession, type HostTensor, type Session } from '../runtime/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import type { ChoiceDoc } from './bigbench.ts';
import { multipleChoiceAccuracy, type ChoiceItemResult } from './multiple-choice.ts';

export interface LoglikelihoodRequest { context: string; continuation: string }
export interface LoglikelihoodResult {
  /** Σ log p of the continuation tokens (nats). */
  loglikelihood: number;
  /** Every continuation token is the model's argmax. */
  isGreedy: boolean;
  /** Number of continuation tokens scored. */
  tokens: number;
}
/** A request in token ids: the model reads context + continuation and scores the continuation. */
export interface EncodedRequest { contextIds: number[]; continuationIds: number[] }

/** What the scorer needs from a tokenizer (src/tokenize TextTokenizer fits). */
export interface LoglikelihoodTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>): string;
  readonly bosId: number | null;
  readonly eosId: number | null;
}

/** What scoring needs of a multiple-choice document (src/eval/bigbench.ts ChoiceDoc). */
export type ChoiceDocLike = Pick<ChoiceDoc, 'id' | 'context' | 'options' | 'gold'>;

export interface EncodeOptions {
  /** Token for an empty context; default BOS, else EOS (HFLM.prefix_token_id). */
  prefixTokenId?: number;
  /** Apply the tokenizer's post-processor (e.g. BOS); default true, HFLM's default. */
  addSpecialTokens?: boolean;
}

function prefixToken(tok: LoglikelihoodTokenizer, o: EncodeOptions): number {
  const id = o.prefixTokenId ?? tok.bosId ?? tok.eosId;
  if (id === null || id === undefined) throw new ConfigError('loglikelihood: the tokenizer has neither a BOS nor an EOS token; pass prefixTokenId for empty contexts');
  return id;
}

/** Python's str.rstrip() set (str.isspace), which differs from JS \s on \x1c-\x1f, \x85 and \ufeff. */
const TRAILING_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/u;

/** The context's trailing whitespace (Python str.isspace), which encodeRequest moves onto the continuation. */
export function trailingWhitespace(context: string): string {
  return context.slice(context.replace(TRAILING_SPACE, '').length);
}

/** Harness tokenisation of one request (TemplateLM.loglikelihood + _encode_pair for a causal LM). */
export function encodeRequest(tok: LoglikelihoodTokenizer, req: LoglikelihoodRequest, o: EncodeOptions = {}): EncodedRequest {
  let { context, continuation } = req;
  if (typeof context !== 'string' || typeof continuation !== 'string') throw new DataError('loglikelihood request: context and continuation must be strings');
  if (context === '') {
    const prefix = prefixToken(tok, o);
    const cont = tok.encode(continuation, { addSpecialTokens: false });
    return cont[0] !== prefix ? { contextIds: [prefix], continuationIds: cont } : { contextIds: cont.slice(0, 1), continuationIds: cont.slice(1) };
  }
  const stripped = context.replace(TRAILING_SPACE, '');
  if (stripped.length < context.length) {
    continuation = context.slice(stripped.length) + continuation;
    context = stripped;
  }
  if (context === '') throw new DataError(`loglikelihood request: the context ${JSON.stringify(req.context)} is only whitespace; give a real context or an empty one (prefix token)`);
  // HFLM.tok_encode: the tokenizer's default, but no special tokens when the string already starts
  // with the prefix token's text.
  const prefixId = o.prefixTokenId ?? tok.bosId ?? tok.eosId;
  const prefixText = o.addSpecialTokens === undefined && prefixId !== null ? tok.decode([prefixId]) : undefined;
  const encode = (s: string): number[] => {
    const add = o.addSpecialTokens ?? (prefixText !== undefined && s.startsWith(prefixText) ? false : undefined);
    return add === undefined ? tok.encode(s) : tok.encode(s, { addSpecialTokens: add });
  };
  const whole = encode(context + continuation);
  const contextIds = encode(context);
  return { contextIds, continuationIds: whole.slice(contextIds.length) };
}

export interface LoglikelihoodGraphOptions { config: ModelConfig; lora?: LoraSpec; moe?: MoeSpec; dtype?: FloatDType }

/**
 * Forward graph for scoring. Inputs: input_ids, attention_mask int64 [B, T]; target_positions int64
 * [B, K] (positions whose next-token distribution is scored; pad with 0) and target_ids int64 [B, K]
 * (the id each should predict, -100 = padding); then the weights. The hidden states are gathered at
 * the K positions before the LM head, so neither [B, T, V] logits nor their log-softmax are made.
 * Outputs `target_logprobs` [B, K] = log_softmax(logits)[b, pos, id] (0 where padding) and
 * `greedy_ids` int64 [B, K] = argmax of the logits (first index on ties).
 */
export function buildLoglikelihoodGraph(o: LoglikelihoodGraphOptions): GraphSpec {
  if (o.lora && o.moe) throw new ConfigError('a model takes either lora or moe adapters, not both');
  const g = new GraphBuilder({ name: `${o.config.modelType}_loglikelihood` });
  const ctx = new ModelContext(g, o);
  const t = transformer(ctx);
  const positions = g.input('target_positions', 'int64', ['batch', 'targets']);
  const ids = g.input('target_ids', 'int64', ['batch', 'targets']);
  const idx = O.expand(O.unsqueeze(positions, [-1]), O.concat([O.shapeOf(positions), g.ints([o.config.hiddenSize])], 0));
  const logits = lmHead(ctx, O.gatherElements(t.hidden, idx, 1)); // [B, K, V]
  const ignored = O.equal(ids, IGNORE_INDEX);
  const safe = O.where(ignored, g.constant(0, 'int64'), ids);
  const picked = O.reshape(O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(safe, [-1]), 2), [0, -1]); // [B, K]
  g.output(O.where(ignored, ctx.scalar(0), picked), 'target_logprobs');
  g.output(O.reshape(O.topK(logits, 1, { axis: -1 })[1], [0, -1]), 'greedy_ids');
  const weightInputs = [...ctx.params.values()].filter((v) => !g.initializers.has(v.name)).map((v) => ({ name: v.name, shape: v.shape as number[] }));
  const names = new Set(weightInputs.map((w) => w.name));
  return {
    model: g.toModel(), weightInputs, dtype: ctx.dtype,
    dataInputs: g.inputs.map((v) => v.name).filter((n) => !names.has(n)),
    outputNames: g.outputs.map((v) => v.name),
  };
}

export interface ScorerOptions extends LoglikelihoodGraphOptions, EncodeOptions {
  /** Base weights under HF names plus any adapter tensors (PEFT / MoE keys). */
  weights: WeightMap;
  tokenizer: LoglikelihoodTokenizer;
  device?: string;
  threads?: number;
  /** Requests per forward pass (default 16). */
  batchSize?: number;
  /** Longest input in tokens; default config.maxPositions. */
  maxLength?: number;
}

/** One request ready to run: the input window and its scored targets (next-token ids of the last positions). */
interface Planned { index: number; input: number[]; targets: number[] }

/** Holds one ORT session of buildLoglikelihoodGraph and the weight feeds. */
export class LoglikelihoodScorer {
  private constructor(
    readonly spec: GraphSpec,
    private readonly session: Session,
    private readonly weightFeeds: Record<string, HostTensor>,
    private readonly o: ScorerOptions,
    readonly maxLength: number,
    readonly batchSize: number,
  ) {}

  static async create(o: ScorerOptions): Promise<LoglikelihoodScorer> {
    const maxLength = o.maxLength ?? o.config.maxPositions;
    const batchSize = o.batchSize ?? 16;
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new ConfigError(`loglikelihood: maxLength is ${maxLength}; expected a positive integer`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`loglikelihood: batchSize is ${batchSize}; expected a positive integer`);
    const spec = buildLoglikelihoodGraph(o);
    // Weights are checked and converted once (feedsFor throws on a missing or mis-shaped tensor).
    const probe = feedsFor(spec, o.weights, padBatch([{ inputIds: [0] }]));
    const weightFeeds: Record<string, HostTensor> = {};
    for (const w of spec.weightInputs) weightFeeds[w.name] = probe[w.name];
    const session = await createSession({ model: spec.model, device: o.device ?? 'cpu:0', threads: o.threads });
    return new LoglikelihoodScorer(spec, session, weightFeeds, o, maxLength, batchSize);
  }

  get tokenizer(): LoglikelihoodTokenizer { return this.o.tokenizer; }

  /** Harness tokenisation of a request with this scorer's tokenizer and options. */
  encode(req: LoglikelihoodRequest): EncodedRequest {
    return encodeRequest(this.o.tokenizer, req, this.o);
  }

  async score(requests: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    return this.scoreEncoded(requests.map((r) => this.encode(r)));
  }

  /** Scores already-tokenised requests (results in input order). */
  async scoreEncoded(requests: EncodedRequest[]): Promise<LoglikelihoodResult[]> {
    const plans = requests.map((r, index): Planned => {
      const { contextIds: ctx, continuationIds: cont } = r;
      if (!ctx.length) throw new DataError(`loglikelihood request ${index}: no context tokens`);
      if (!cont.length) throw new DataError(`loglikelihood request ${index}: the continuation has no tokens (it is empty, or the context's tokenisation absorbed it)`);
      if (cont.length > this.maxLength) throw new DataError(`loglikelihood request ${index}: continuation of ${cont.length} tokens is longer than maxLength ${this.maxLength}`);
      const all = [...ctx, ...cont].slice(-(this.maxLength + 1)); // HFLM: [-(max_length + 1):][:-1]
      this.checkIds(all, `loglikelihood request ${index}`);
      return { index, input: all.slice(0, -1), targets: cont };
    });
    const order = [...plans].sort((a, b) => b.input.length - a.input.length || a.index - b.index);
    const results = new Array<LoglikelihoodResult>(requests.length);
    for (let s = 0; s < order.length; s += this.batchSize) {
      const chunk = order.slice(s, s + this.batchSize);
      const { logprobs: lp, greedy, K } = await this.run(chunk.map((p) => p.input), chunk.map((p) => p.targets));
      chunk.forEach((p, b) => {
        let ll = 0, isGreedy = true;
        p.targets.forEach((id, k) => {
          ll += lp[b * K + k];
          if (Number(greedy[b * K + k]) !== id) isGreedy = false;
        });
        results[p.index] = { loglikelihood: ll, isGreedy, tokens: p.targets.length };
      });
    }
    return results;
  }

  /**
   * The greedy next token after each sequence: argmax of the logits at its last position (first
   * index on ties, as torch.argmax), on the same graph and session as scoring — base, LoRA, LoRA-MoE
   * or pruned weights alike. Sequences of 1..maxLength tokens are run right-padded, batchSize at a
   * time, longest first; results in input order. One full forward pass per batch (no KV cache).
   */
  async nextTokens(sequences: readonly (readonly number[])[]): Promise<number[]> {
    sequences.forEach((seq, i) => {
      if (!seq.length) throw new DataError(`nextTokens: sequence ${i} is empty`);
      if (seq.length > this.maxLength) throw new DataError(`nextTokens: sequence ${i} has ${seq.length} tokens, more than maxLength ${this.maxLength}`);
      this.checkIds(seq, `nextTokens: sequence ${i}`);
    });
    const order = sequences.map((_, i) => i).sort((a, b) => sequences[b].length - sequences[a].length || a - b);
    const out = new Array<number>(sequences.length);
    for (let s = 0; s < order.length; s += this.batchSize) {
      const chunk = order.slice(s, s + this.batchSize);
      // target id -100 (ignored): only the greedy id at the last position is read.
      const { greedy } = await this.run(chunk.map((i) => sequences[i]), chunk.map(() => [IGNORE_INDEX]));
      chunk.forEach((i, b) => { out[i] = Number(greedy[b]); });
    }
    return out;
  }

  private checkIds(ids: readonly number[], where: string): void {
    const V = this.o.config.vocabSize;
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= V) throw new DataError(`${where}: token id ${id} is outside the vocabulary [0, ${V})`);
  }

  /**
   * One forward pass over right-padded `inputs`; row b scores targets[b][k] at position
   * len − targets.length + k (its last positions; a single target: the last position).
   */
  private async run(inputs: readonly (readonly number[])[], targets: readonly (readonly number[])[]): Promise<{ logprobs: Float32Array | Float64Array; greedy: BigInt64Array; K: number }> {
    const batch = padBatch(inputs.map((input) => ({ inputIds: [...input] })), { padId: 0 });
    const K = Math.max(...targets.map((t) => t.length)), B = inputs.length;
    const positions = new BigInt64Array(B * K), ids = new BigInt64Array(B * K).fill(BigInt(IGNORE_INDEX));
    targets.forEach((tg, b) => tg.forEach((id, k) => {
      positions[b * K + k] = BigInt(inputs[b].length - tg.length + k); // logits here predict targets[k]
      ids[b * K + k] = BigInt(id);
    }));
    const dims = [B, batch.seq];
    const out = await this.session.run({
      ...this.weightFeeds, input_ids: { data: batch.inputIds, dims }, attention_mask: { data: batch.attentionMask, dims },
      target_positions: { data: positions, dims: [B, K] }, target_ids: { data: ids, dims: [B, K] },
    });
    return { logprobs: out.target_logprobs.data as Float32Array | Float64Array, greedy: out.greedy_ids.data as BigInt64Array, K };
  }

  release(): Promise<void> { return this.session.release(); }
}

/** A document's requests, one per option: (context, delimiter + bare option). */
export const requestsOf = (d: ChoiceDocLike, delimiter = ' '): (LoglikelihoodRequest & { option: number })[] =>
  d.options.map((o, option) => ({ option, context: d.context, continuation: delimiter + o }));

/** Every document's requests, flat, with the document and option index to match answers back. */
export function choiceRequests(docs: readonly ChoiceDocLike[], delimiter = ' '): (LoglikelihoodRequest & { doc: number; option: number })[] {
  return docs.flatMap((d, doc) => requestsOf(d, delimiter).map((r) => ({ doc, ...r })));
}

/** Scores every option of every document; returns log-likelihoods per document, per option. */
export async function scoreChoiceDocs(scorer: Pick<LoglikelihoodScorer, 'score'>, docs: readonly ChoiceDocLike[], opts: { delimiter?: string } = {}): Promise<number[][]> {
  const reqs = choiceRequests(docs, opts.delimiter);
  const res = await scorer.score(reqs);
  const lls = docs.map((d) => new Array<number>(d.options.length));
  reqs.forEach((r, i) => { lls[r.doc][r.option] = res[i].loglikelihood; });
  return lls;
}

export interface ChoiceDocResult extends ChoiceItemResult { id: string; loglikelihoods: number[]; acc: 0 | 1; accNorm: 0 | 1 }
export interface MultipleChoiceResult { acc: number; accNorm: number; n: number; docs: ChoiceDocResult[] }

/**
 * acc / acc_norm per document and their means from per-option log-likelihoods `lls[doc][option]`:
 * acc = argmax of the sums is a gold option; acc_norm = argmax of sum / length of the bare option
 * (UTF-8 bytes by default, `lengthUnit: 'chars'` for the harness's character count), ties to the first.
 */
export function multipleChoiceFromLoglikelihoods(docs: readonly ChoiceDocLike[], lls: readonly number[][], opts: { lengthUnit?: 'bytes' | 'chars' } = {}): MultipleChoiceResult {
  if (lls.length !== docs.length) throw new DataError(`multipleChoiceFromLoglikelihoods: ${lls.length} log-likelihood rows for ${docs.length} documents`);
  docs.forEach((d, i) => {
    if (lls[i].length !== d.options.length) throw new DataError(`multipleChoiceFromLoglikelihoods: document ${d.id} has ${d.options.length} options but ${lls[i].length} log-likelihoods`);
  });
  const r = multipleChoiceAccuracy({ items: docs.map((d, i) => ({ logLikelihoods: [...lls[i]], options: d.options, gold: d.gold })), lengthUnit: opts.lengthUnit });
  return {
    acc: r.acc, accNorm: r.accNorm!, n: r.n,
    docs: r.items.map((it, i) => ({ ...it, id: docs[i].id, loglikelihoods: [...lls[i]], acc: it.correct ? 1 : 0, accNorm: it.correctNorm ? 1 : 0 })),
  };
}
