/**
 * Zero-shot multiple-choice accuracy, lm-eval-harness style (SCIENCE.md §3c-§3d):
 *   acc      = mean 1[argmax_c ll_c ∈ gold]
 *   acc_norm = mean 1[argmax_c ll_c / len_c ∈ gold]
 * ll_c = summed log-likelihood of option c's continuation (delimiter + option) given the context;
 * len_c the length of the BARE option (the delimiter is not counted, as in the harness), in UTF-8
 * bytes (default, SCIENCE.md §3d; the harness's `acc_bytes`) or in characters (`lengthUnit:
 * 'chars'`, what the harness's own `acc_norm` computes; identical for ASCII). gold is one option
 * index or a list (BIG-bench target_scores may mark several options correct). Ties go to the first
 * option (np.argmax).
 */
import { DataError } from '../errors.ts';
import { checkFiniteNumber, checkNonEmpty } from './check.ts';

export interface ChoiceItem {
  /** Log-likelihood of each option's continuation. */
  logLikelihoods: number[];
  /** The bare option strings (without the delimiter); needed for acc_norm. */
  options?: string[];
  /** Index of the correct option, or the indices of all correct options. */
  gold: number | number[];
}

export interface ChoiceItemResult {
  /** argmax of the log-likelihoods. */
  pred: number;
  /** argmax of the length-normalised log-likelihoods (when options were given). */
  predNorm?: number;
  correct: boolean;
  correctNorm?: boolean;
}

export interface ChoiceAccuracy {
  acc: number;
  accNorm?: number;
  n: number;
  /** Per item, in input order. */
  items: ChoiceItemResult[];
}

export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export function optionLength(text: string, unit: 'bytes' | 'chars' = 'bytes'): number {
  return unit === 'bytes' ? Buffer.byteLength(text, 'utf8') : text.length;
}

/** The gold indices of item `q` as a non-empty list of distinct option indices in [0, k). */
export function goldList(gold: number | number[], k: number, where: string): number[] {
  const list = Array.isArray(gold) ? gold : [gold];
  if (!list.length) throw new DataError(`${where}: gold is empty; expected at least one correct option index`);
  for (const g of list) {
    if (!Number.isInteger(g) || g < 0 || g >= k) throw new DataError(`${where}: gold = ${g}; expected an option index in [0, ${k})`);
  }
  if (new Set(list).size !== list.length) throw new DataError(`${where}: gold [${list}] repeats an index`);
  return list;
}

export function multipleChoiceAccuracy({ items, lengthUnit = 'bytes' }: { items: ChoiceItem[]; lengthUnit?: 'bytes' | 'chars' }): ChoiceAccuracy {
  checkNonEmpty(items.length, 'multipleChoiceAccuracy');
  const withNorm = items.every((it) => it.options !== undefined);
  const results = items.map((it, q): ChoiceItemResult => {
    const where = `multipleChoiceAccuracy: item ${q}`;
    const k = it.logLikelihoods.length;
    if (k < 2) throw new DataError(`${where} has ${k} options; expected at least 2`);
    const gold = goldList(it.gold, k, where);
    it.logLikelihoods.forEach((x, c) => checkFiniteNumber(x, `${where}, option ${c} log-likelihood`));
    const pred = argmax(it.logLikelihoods);
    if (!withNorm) return { pred, correct: gold.includes(pred) };
    if (it.options!.length !== k) throw new DataError(`${where} has ${it.options!.length} options for ${k} log-likelihoods`);
    const norm = it.logLikelihoods.map((ll, c) => {
      const len = optionLength(it.options![c], lengthUnit);
      if (len === 0) throw new DataError(`${where}, option ${c} is empty; acc_norm needs a positive length`);
      return ll / len;
    });
    const predNorm = argmax(norm);
    return { pred, predNorm, correct: gold.includes(pred), correctNorm: gold.includes(predNorm) };
  });
  const mean = (f: (r: ChoiceItemResult) => boolean | undefined) => results.filter(f).length / results.length;
  return { acc: mean((r) => r.correct), ...(withNorm ? { accNorm: mean((r) => r.correctNorm) } : {}), n: items.length, items: results };
}
