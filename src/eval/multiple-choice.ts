/**
 * Zero-shot multiple-choice accuracy, lm-eval-harness style (SCIENCE.md §3c):
 *   acc      = mean 1[argmax_c ll_c = gold]
 *   acc_norm = mean 1[argmax_c ll_c / len_c = gold]
 * ll_c = summed log-likelihood of continuation c given the context; len_c its length in UTF-8
 * bytes (default, as the harness documents acc_norm) or in characters (`lengthUnit: 'chars'`,
 * what the harness code's len(str) computes; identical for ASCII). Ties go to the first option.
 */
import { DataError } from '../errors.ts';
import { checkFiniteNumber, checkNonEmpty } from './check.ts';

export interface ChoiceItem {
  /** Log-likelihood of each option's continuation. */
  logLikelihoods: number[];
  /** Continuation strings (as scored, e.g. with the leading space); needed for acc_norm. */
  continuations?: string[];
  /** Index of the correct option. */
  gold: number;
}

export interface ChoiceAccuracy {
  acc: number;
  accNorm?: number;
  n: number;
}

function argmax(values: number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export function continuationLength(text: string, unit: 'bytes' | 'chars' = 'bytes'): number {
  return unit === 'bytes' ? Buffer.byteLength(text, 'utf8') : text.length;
}

export function multipleChoiceAccuracy({ items, lengthUnit = 'bytes' }: { items: ChoiceItem[]; lengthUnit?: 'bytes' | 'chars' }): ChoiceAccuracy {
  checkNonEmpty(items.length, 'multipleChoiceAccuracy');
  let correct = 0, correctNorm = 0;
  const withNorm = items.every((it) => it.continuations !== undefined);
  items.forEach((it, q) => {
    const k = it.logLikelihoods.length;
    if (k < 2) throw new DataError(`multipleChoiceAccuracy: item ${q} has ${k} options; expected at least 2`);
    if (!Number.isInteger(it.gold) || it.gold < 0 || it.gold >= k) throw new DataError(`multipleChoiceAccuracy: item ${q} gold = ${it.gold}; expected an option index in [0, ${k})`);
    it.logLikelihoods.forEach((x, c) => checkFiniteNumber(x, `multipleChoiceAccuracy: item ${q}, option ${c} log-likelihood`));
    if (argmax(it.logLikelihoods) === it.gold) correct++;
    if (withNorm) {
      if (it.continuations!.length !== k) throw new DataError(`multipleChoiceAccuracy: item ${q} has ${it.continuations!.length} continuations for ${k} log-likelihoods`);
      const norm = it.logLikelihoods.map((ll, c) => {
        const len = continuationLength(it.continuations![c], lengthUnit);
        if (len === 0) throw new DataError(`multipleChoiceAccuracy: item ${q}, option ${c} has an empty continuation; acc_norm needs a positive length`);
        return ll / len;
      });
      if (argmax(norm) === it.gold) correctNorm++;
    }
  });
  return { acc: correct / items.length, ...(withNorm ? { accNorm: correctNorm / items.length } : {}), n: items.length };
}
