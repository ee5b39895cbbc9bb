/**
 * Exact-match accuracy of generated answers (SCIENCE.md §3c, MoE evaluation), lm-eval style:
 * an answer is extracted from each generation with a regex (its first capture group, or the
 * whole match; the `first` match by default, or the `last`), then normalised (trim, optional
 * case folding, optional removal of `ignore` patterns such as "," or "\\$") and compared to
 * the equally normalised gold answer. A generation without a match counts as wrong.
 */
import { ConfigError, DataError } from '../errors.ts';
import { checkNonEmpty } from './check.ts';

export interface ExactMatchArgs {
  generations: string[];
  answers: string[];
  /** Answer-extraction pattern, e.g. /#### (-?[0-9.,]+)/. Omit to compare whole generations. */
  extract?: RegExp;
  pick?: 'first' | 'last';
  ignoreCase?: boolean;
  ignore?: RegExp[];
}

export interface ExactMatch {
  accuracy: number;
  extracted: Array<string | null>;
  correct: boolean[];
  n: number;
}

export function extractAnswer(text: string, extract: RegExp | undefined, pick: 'first' | 'last' = 'first'): string | null {
  if (!extract) return text;
  const flags = extract.flags.includes('g') ? extract.flags : extract.flags + 'g';
  const matches = [...text.matchAll(new RegExp(extract.source, flags))];
  if (matches.length === 0) return null;
  const m = pick === 'first' ? matches[0] : matches[matches.length - 1];
  return m[1] ?? m[0];
}

export function exactMatchAccuracy({ generations, answers, extract, pick = 'first', ignoreCase = false, ignore = [] }: ExactMatchArgs): ExactMatch {
  checkNonEmpty(generations.length, 'exactMatchAccuracy');
  if (generations.length !== answers.length) throw new DataError(`exactMatchAccuracy: ${generations.length} generations for ${answers.length} answers; expected equal counts`);
  if (pick !== 'first' && pick !== 'last') throw new ConfigError(`exactMatchAccuracy: pick = ${pick}; expected 'first' or 'last'`);
  const norm = (s: string) => {
    let out = s;
    for (const re of ignore) out = out.replace(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'), '');
    out = out.trim();
    return ignoreCase ? out.toLowerCase() : out;
  };
  const extracted = generations.map((g) => extractAnswer(g, extract, pick));
  const correct = extracted.map((e, i) => e !== null && norm(e) === norm(answers[i]));
  return { accuracy: correct.filter(Boolean).length / generations.length, extracted, correct, n: generations.length };
}
