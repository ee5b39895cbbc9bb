/**
 * Classification accuracy (SCIENCE.md §4 evaluation set): from predicted labels, or from
 * per-class logits (argmax, ties to the lowest class). Also returns the per-sample
 * correctness mask used by the "-c" NDR aggregation variants.
 */
import { DataError } from '../errors.ts';
import { checkFiniteNumber, checkNonEmpty } from './check.ts';

export interface ClassificationAccuracy {
  accuracy: number;
  correct: boolean[];
  n: number;
}

export function classificationAccuracy({ labels, predictions, logits }: { labels: number[]; predictions?: number[]; logits?: number[][] }): ClassificationAccuracy {
  checkNonEmpty(labels.length, 'classificationAccuracy');
  let pred: number[];
  if (predictions) pred = predictions;
  else if (logits) {
    pred = logits.map((row, i) => {
      if (row.length === 0) throw new DataError(`classificationAccuracy: sample ${i} has no logits`);
      row.forEach((x, c) => checkFiniteNumber(x, `classificationAccuracy: sample ${i}, class ${c} logit`));
      return row.reduce((b, x, c) => (x > row[b] ? c : b), 0);
    });
  } else throw new DataError('classificationAccuracy: give either predictions or logits');
  if (pred.length !== labels.length) throw new DataError(`classificationAccuracy: ${pred.length} predictions for ${labels.length} labels; expected equal counts`);
  const correct = labels.map((y, i) => pred[i] === y);
  return { accuracy: correct.filter(Boolean).length / labels.length, correct, n: labels.length };
}
