/** Per-sample losses: causal-LM token cross-entropy (HF shift) and sequence-classification cross-entropy. */
import * as O from '../onnx/index.ts';
import type { Value } from '../onnx/index.ts';

export const IGNORE_INDEX = -100;
const BIG = 2 ** 62;

/**
 * Mean token cross-entropy per sample over target tokens only, shifted as HF does: logits[:, t]
 * predicts labels[:, t + 1]; labels == -100 (prompt, padding) are ignored.
 * @param logits [B, T, V]  @param labels int64 [B, T]
 * @returns perSample [B] (0 for a sample without targets) and tokens [B] (target counts, float).
 */
export function causalLmLoss(logits: Value, labels: Value): { perSample: Value; tokens: Value } {
  // labels[:, 1:] followed by one ignored position, without copying the [B, T, V] logits.
  const shifted = O.sub(O.pad(O.slice(O.add(labels, -IGNORE_INDEX), { starts: [1], ends: [BIG], axes: [1] }), [0, 0, 0, 1]), -IGNORE_INDEX);
  const ignored = O.equal(shifted, IGNORE_INDEX);
  const safe = O.where(ignored, 0, shifted);
  const valid = O.sub(1, O.cast(ignored, logits.dtype)); // [B, T]
  const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(safe, [-1]), 2); // [B, T, 1]
  const sum = O.neg(O.reduceSum(O.mul(O.reshape(picked, [0, -1]), valid), [1], false)); // [B]
  const tokens = O.reduceSum(valid, [1], false);
  const denom = O.add(tokens, O.cast(O.equal(tokens, 0), logits.dtype));
  return { perSample: O.div(sum, denom), tokens };
}

/** Cross-entropy per sample for class logits [B, C] and int64 labels [B]. Returns [B]. */
export function classificationLoss(logits: Value, labels: Value): Value {
  const picked = O.gatherElements(O.logSoftmax(logits, -1), O.unsqueeze(labels, [-1]), 1); // [B, 1]
  return O.neg(O.reshape(picked, [-1]));
}
