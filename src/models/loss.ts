/** Per-sample losses: causal-LM token cross-entropy (HF shift) and sequence-classification cross-entropy. */
import * as O from '../onnx/index.ts';
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
  const sum = O.neg(O.reduceSum(O.mul(O.reshape(picked, [0, -1]), valid), [1], false)); // [B]
  const tokens = O.reduceSum(valid, [1], false);
  const denom = O.add(tokens, O.cast(O.equal(tokens, 0), logits.dtype));
  return { perSample: O.div(sum, denom), tokens };
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
 * @param hidden [B, T, D]  @param labels int64 [B, T]  @param head [B, K, D] → logits [B, K, V]
 */
export function causalLmLossAtTargets(hidden: Value, labels: Value, head: (h: Value) => Value): { perSample: Value; tokens: Value } {
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
  const logits = head(O.gatherElements(hidden, rows, 1)); // [B, K, V]
  return meanNll(logits, O.gatherElements(safe, idx, 1), O.gatherElements(valid, idx, 1));
}

/** Cross-entropy per sample for class logits [B, C] and int64 labels [B]. Returns [B]. */
export function classificationLoss(logits: Value, labels: Value): Value {
  const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(labels, [-1]), 1); // [B, 1]
  return O.neg(O.reshape(picked, [-1]));
}
