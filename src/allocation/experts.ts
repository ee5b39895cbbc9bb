/**
 * LayerIF expert allocation for LoRA-MoE (SCIENCE.md §3a):
 *   w_l = S_l^β (scores made non-negative first), f_l = w_l / Σ w · (T − L),
 *   s_l = floor(f_l) + 1, remaining experts by largest remainder (see `expertsFromShares`).
 * If every w_l is 0 (all scores equal after making them non-negative) the shares are equal.
 * Worked example (paper): L = 32, T = 160, β = 3, f = 1.12, 5.21, 4.55, 5.40, 4.84 → s = 2, 6, 6, 6, 6.
 */
import { ConfigError, DataError } from '../errors.ts';
import { checkBudget, checkScores, expertsFromShares } from './apportion.ts';

export interface ExpertAllocation {
  method: 'layerif' | 'alphalora' | 'mola';
  experts: number[];
  /** Realised Σ experts (always equals T). */
  total: number;
  /** Real-valued shares before integer apportionment (f_l for LayerIF, raw share for the others). */
  shares: number[];
}

export interface AllocateExpertsArgs {
  /** Layer scores S_l (higher = worse-trained layer = more experts). */
  scores: ArrayLike<number>;
  total?: number;
  beta?: number;
  /**
   * How negative scores are made non-negative: `shift` subtracts the minimum when it is
   * negative (default), `clip` sets negatives to 0. +VE scores are never negative.
   */
  nonNegative?: 'shift' | 'clip';
}

export function allocateExperts({ scores, total = 160, beta = 3, nonNegative = 'shift' }: AllocateExpertsArgs): ExpertAllocation {
  checkScores(scores, 'allocateExperts scores');
  const L = scores.length;
  checkBudget(total, L);
  if (!(beta > 0) || !Number.isFinite(beta)) throw new ConfigError(`allocateExperts: β = ${beta}; expected a positive number (default 3)`);
  const s = Array.from(scores);
  const min = Math.min(...s);
  const nn = nonNegative === 'clip' ? s.map((x) => Math.max(0, x)) : s.map((x) => (min < 0 ? x - min : x));
  const w = nn.map((x) => x ** beta);
  const sum = w.reduce((a, b) => a + b, 0);
  if (!Number.isFinite(sum)) {
    throw new DataError(`allocateExperts: Σ S_l^β = ${sum} overflows (β = ${beta}); expected a finite sum — rescale the scores`);
  }
  // All weights zero (e.g. all scores equal under 'shift'): no layer is distinguished → equal shares.
  const shares = w.map((x) => (sum > 0 ? x / sum : 1 / L) * (total - L));
  const experts = expertsFromShares(shares, total);
  return { method: 'layerif', experts, total: experts.reduce((a, b) => a + b, 0), shares };
}
