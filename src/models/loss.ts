/** Per-sample losses: causal-LM token cross-entropy (HF shift) and sequence-classification cross-entropy. */
import * as O from '../onnx/index.ts';
import { GraphBuilder, Scan } from '../onnx/index.ts';
import { DataError } from '../errors.ts';
import type { OpDef, Value } from '../onnx/index.ts';
import { arange } from './ops.ts';

export const IGNORE_INDEX = -100;
const BIG = 2 ** 62;
/**
 * ONNX TopK over the last axis with a computed K (its size named 'targets'); used for indices only,
 * never differentiated. The leading dims are given (the labels' batch dim), since the key they are
 * computed from passed through ops whose output dims the builder cannot name; with every dim named,
 * ORT's planner can reuse the [B, K, V] buffers of the loss head.
 */
const topKLast = (lead: Value['shape']): OpDef => ({
  type: 'TopK',
  attrs: { axis: 'i' },
  infer: ([x]) => {
    const shape = [...(lead.length === x!.shape.length - 1 ? lead : x!.shape.slice(0, -1)), 'targets'];
    return [{ dtype: x!.dtype, shape }, { dtype: 'int64', shape }];
  },
});

/** labels[:, 1:] followed by one ignored position: `safe` ids (0 where ignored) and `valid` [B, T] (1 = target) in `dtype`. */
function shiftedTargets(labels: Value, dtype: Value['dtype']): { safe: Value; valid: Value } {
  const shifted = O.sub(O.pad(O.slice(O.add(labels, -IGNORE_INDEX), { starts: [1], ends: [BIG], axes: [1] }), [0, 0, 0, 1]), -IGNORE_INDEX);
  const ignored = O.equal(shifted, IGNORE_INDEX);
  return { safe: O.where(ignored, 0, shifted), valid: O.sub(1, O.cast(ignored, dtype)) };
}

/**
 * Mean of -log p(target) over valid positions per sample, from logits [B, K, V], safe ids and valid [B, K].
 * The backward pass of this pick is softmax · (−Σg) with g scattered into the targets of that same
 * tensor (LogSoftmax's VJP, src/onnx/ops/reduce.ts): no zeros + scatter + difference chain of [B, K, V].
 */
function meanNll(logits: Value, safe: Value, valid: Value): { perSample: Value; tokens: Value } {
  const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(safe, [-1]), 2); // [B, K, 1]
  return meanOf(O.neg(O.reshape(picked, [0, -1])), valid);
}

/**
 * Mean token cross-entropy per sample over target tokens only, shifted as HF does: logits[:, t]
 * predicts labels[:, t + 1]; labels == -100 (prompt, padding) are ignored.
 * @param logits [B, T, V]  @param labels int64 [B, T]
 * @returns perSample [B] (0 for a sample without targets) and tokens [B] (target counts, float).
 */
export function causalLmLoss(logits: Value, labels: Value): { perSample: Value; tokens: Value } {
  const { safe, valid } = shiftedTargets(labels, logits.dtype);
  return meanNll(logits, safe, valid);
}

/**
 * causalLmLoss(head(hidden), labels) without making the [B, T, V] logits: the hidden states of the
 * positions that have a target are gathered first (per sample in position order, K = the most
 * targets any sample has, at least 1; the rest of a shorter sample's K rows are masked out) and only
 * those [B, K, D] go through the LM head. Same values; with answer-only labels K is a few tokens,
 * which matters for large vocabularies (Gemma 3: 262,144).
 * @param hidden [B, T, D]  @param labels int64 [B, T]
 * @param head [B, K, D] → logits [B, K, V]; or `{ weight }` [V, D], a frozen head whose cross-entropy
 *   runs fused with its backward, chunked (headCrossEntropy: no [B, K, V] logits at all)
 */
export function causalLmLossAtTargets(hidden: Value, labels: Value, head: ((h: Value) => Value) | { weight: Value }): { perSample: Value; tokens: Value } {
  const g = hidden.graph;
  const { safe, valid } = shiftedTargets(labels, hidden.dtype);
  // Valid positions first, each sample's in increasing order: key = valid · 2^24 − t (exact in float32 for T < 2^24).
  const validF = O.cast(valid, 'float32');
  const t = O.cast(arange(O.gather(O.shapeOf(labels), g.constant(1, 'int64'))), 'float32');
  const key = O.sub(O.mul(validF, 2 ** 24), O.unsqueeze(t, [0]));
  const most = O.reduceMax(O.reduceSum(validF, [1], false), [0], true); // [1]
  const k = O.cast(O.add(most, O.cast(O.equal(most, 0), 'float32')), 'int64');
  const idx = g.apply(topKLast(labels.shape.slice(0, 1)), [key, k], { axis: -1 })[1]; // [B, K]
  const rows = O.expand(O.unsqueeze(idx, [-1]), O.concat([O.shapeOf(idx), O.slice(O.shapeOf(hidden), { starts: [2], ends: [3] })], 0));
  const h = O.gatherElements(hidden, rows, 1); // [B, K, D]
  const ids = O.gatherElements(safe, idx, 1), ok = O.gatherElements(valid, idx, 1);
  return typeof head === 'function' ? meanNll(head(h), ids, ok) : headCrossEntropy(h, ids, ok, head.weight);
}

/** Rows of the LM head per chunk of the fused cross-entropy: the batch × a chunk of target positions. */
export const HEAD_CHUNK_TARGETS = 32;

/**
 * Mean token cross-entropy per sample through a frozen LM head W [V, D], fused with its backward and
 * chunked over the target positions: an ONNX Scan over n = ⌈K / 32⌉ chunks of C = ⌈K / n⌉ positions
 * (all samples at once, B·C rows per GEMM) whose body makes the chunk's logits, its nll and, at once,
 * the gradient of each nll row w.r.t. its hidden state, (softmax − onehot) · W. The Scan's VJP scales
 * those rows by the incoming gradient, so backpropagation never holds the [B, K, V] logits: the live
 * logits-sized tensors are a chunk's [B·C, V] (SmolLM2, 127 targets, batch 8: 4 chunks of 50 MB
 * instead of 200 MB tensors). Positions past K (when C·n > K) repeat the last one with weight 0.
 * W is read by the body from the outer graph and gets no gradient (frozen, as in LoRA graphs).
 * @param h [B, K, D]  @param ids int64 [B, K]  @param valid [B, K] (1 = target)  @param weight [V, D]
 */
function headCrossEntropy(h: Value, ids: Value, valid: Value, weight: Value): { perSample: Value; tokens: Value } {
  const g = h.graph;
  const one = g.ints([1]);
  const K = O.slice(O.shapeOf(h), { starts: [1], ends: [2] }); // [1]
  const n = O.div(O.add(K, HEAD_CHUNK_TARGETS - 1), HEAD_CHUNK_TARGETS); // ⌈K / 32⌉
  const C = O.div(O.sub(O.add(K, n), one), n); // ⌈K / n⌉
  const Kp = O.mul(n, C);
  const pos = arange(O.reshape(Kp, []), 'padded_targets'); // [Kp]
  const within = O.less(pos, O.reshape(K, []));
  const at = O.where(within, pos, O.reshape(O.sub(K, one), [])); // clamped to K − 1
  const B = O.slice(O.shapeOf(h), { starts: [0], ends: [1] });
  const D = O.slice(O.shapeOf(h), { starts: [2], ends: [3] });
  const hs = O.transpose(O.reshape(O.gather(h, at, 1), O.concat([B, n, C, D], 0)), [1, 0, 2, 3]); // [n, B, C, D]
  const is = O.transpose(O.reshape(O.gather(ids, at, 1), O.concat([B, n, C], 0)), [1, 0, 2]); // [n, B, C]
  const [nllS] = g.apply(HeadScan, [hs, is], { body: headChunkBody(g, hs, is, weight), num_scan_inputs: 2 });
  const nll = O.reshape(O.transpose(nllS, [1, 0, 2]), O.concat([B, Kp], 0)); // [B, Kp]
  return meanOf(nll, O.mul(O.gather(valid, at, 1), O.unsqueeze(O.cast(within, h.dtype), [0])));
}

/** Scan body: a chunk hb [B, C, D], ib [B, C] → nll [B, C] and d nll / d hb [B, C, D]. */
function headChunkBody(g: GraphBuilder, hs: Value, is: Value, weight: Value): GraphBuilder {
  const body = new GraphBuilder({ name: 'lm_head_ce', prefix: `${g.uniqueName('lmce')}_` });
  const hb = body.input(body.uniqueName('h'), hs.dtype, hs.shape.slice(1));
  const ib = body.input(body.uniqueName('ids'), 'int64', is.shape.slice(1));
  const W = body.outer(weight);
  const rows = O.reshape(hb, O.concat([body.ints([-1]), O.slice(O.shapeOf(hb), { starts: [2], ends: [3] })], 0)); // [B·C, D]
  const logp = O.logSoftmax(O.gemm(rows, W, null, { transB: 1 }), -1); // [B·C, V] (Gemm: no transposed copy of W)
  const at = O.reshape(ib, [-1, 1]);
  const picked = O.gatherElements(logp, at, 1); // [B·C, 1]
  body.output(O.reshape(O.neg(picked), O.shapeOf(ib))); // nll [B, C]
  const dlogits = O.scatterElements(O.exp(logp), at, O.constantOfShape(O.shapeOf(picked), -1, hs.dtype), { axis: 1, reduction: 'add' });
  body.output(O.reshape(O.matMul(dlogits, W), O.shapeOf(hb))); // [B, C, D]
  return body;
}

/** Mean over valid positions per sample of a per-position nll [B, K]; valid [B, K]. */
function meanOf(nll: Value, valid: Value): { perSample: Value; tokens: Value } {
  const sum = O.reduceSum(O.mul(nll, valid), [1], false); // [B]
  const tokens = O.reduceSum(valid, [1], false);
  const denom = O.add(tokens, O.cast(O.equal(tokens, 0), nll.dtype));
  return { perSample: O.div(sum, denom), tokens };
}

/** ONNX Scan of headChunkBody: outputs nll [n, B, C] and its row gradients [n, B, C, D]; VJP w.r.t. the chunks = rows · g. */
const HeadScan: OpDef = {
  ...Scan,
  vjp: ({ grads: [gNll, gRows], outputs: [, rows] }) => {
    if (gRows) throw new DataError('lm head cross-entropy: its row gradients are not differentiable');
    return [gNll ? O.mul(rows, O.unsqueeze(gNll, [-1])) : null, null];
  },
};

/** Cross-entropy per sample for class logits [B, C] and int64 labels [B]. Returns [B]. */
export function classificationLoss(logits: Value, labels: Value): Value {
  const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(labels, [-1]), 1); // [B, 1]
  return O.neg(O.reshape(picked, [-1]));
}
