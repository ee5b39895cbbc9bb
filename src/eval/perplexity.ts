/**
 * Perplexity over a text set (SCIENCE.md §3c): token-weighted over the whole set,
 *   PPL = exp( Σ_texts Σ_tokens nll / Σ_texts #tokens ),
 * from per-token negative log-likelihoods (natural log) of each text.
 */
import { DataError } from '../errors.ts';
import { checkFiniteNumber, checkNonEmpty } from './check.ts';

export interface Perplexity {
  perplexity: number;
  meanNll: number;
  tokens: number;
  texts: number;
}

export function perplexity({ tokenNlls }: { tokenNlls: ArrayLike<number>[] }): Perplexity {
  checkNonEmpty(tokenNlls.length, 'perplexity');
  let sum = 0, tokens = 0;
  tokenNlls.forEach((nll, t) => {
    for (let i = 0; i < nll.length; i++) {
      checkFiniteNumber(nll[i], `perplexity: text ${t}, token ${i} NLL`);
      if (nll[i] < 0) throw new DataError(`perplexity: text ${t}, token ${i} NLL is ${nll[i]}; expected ≥ 0 (negative log-likelihood)`);
      sum += nll[i];
    }
    tokens += nll.length;
  });
  if (tokens === 0) throw new DataError('perplexity: the texts contain no scored tokens');
  return { perplexity: Math.exp(sum / tokens), meanNll: sum / tokens, tokens, texts: tokenNlls.length };
}
