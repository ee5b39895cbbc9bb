/**
 * AlphaLoRA expert allocation (SCIENCE.md §3a): per-layer α̂ (mean of the block's matrices'
 * Hill estimates, see alpha-hill.ts), w_l = α_l^β, shares w_l / Σ w · T, β = 2.5 by default.
 * Integer counts (`rounding`):
 *   - 'authors' (default): the authors' expert_number.py `exponential_scaling` —
 *     np.round (half to even), then ±1 fix-ups at argmin / argmax of (α^β − count) until Σ = T;
 *     reproduces their numbers exactly. Their rule has no one-expert minimum: when it would leave
 *     a layer with fewer than one expert this throws ConfigError (it never returns such a layer).
 *   - 'share': LayerFlow's rule, max(1, round(share)) then ±1 fix-ups by the distance between
 *     share and count (`roundWithFixups`); always keeps ≥ 1 expert per layer.
 */
import { ConfigError, DataError } from '../errors.ts';
import { checkBudget, checkScores, roundAlphaLoraAuthors, roundWithFixups } from './apportion.ts';
import type { ExpertAllocation } from './experts.ts';

export type AlphaLoraRounding = 'authors' | 'share';

export interface AlphaLoraArgs {
  /** Per-layer α̂ (> 0). */
  alphas: ArrayLike<number>;
  /** Total experts T (≥ number of layers; default 160). */
  total?: number;
  /** Exponent β (default 2.5). */
  beta?: number;
  /** Integer apportionment (default 'authors'). */
  rounding?: AlphaLoraRounding;
}

export function alphaLoraExperts({ alphas, total = 160, beta = 2.5, rounding = 'authors' }: AlphaLoraArgs): ExpertAllocation {
  checkScores(alphas, 'alphaLoraExperts alphas');
  checkBudget(total, alphas.length);
  if (!(beta > 0) || !Number.isFinite(beta)) throw new ConfigError(`alphaLoraExperts: β = ${beta}; expected a positive number (default 2.5)`);
  if (rounding !== 'authors' && rounding !== 'share') throw new ConfigError(`alphaLoraExperts: rounding = ${JSON.stringify(rounding)}; expected 'authors' (default) or 'share'`);
  for (let l = 0; l < alphas.length; l++) if (!(alphas[l] > 0)) throw new ConfigError(`alphaLoraExperts: α̂ of layer ${l} is ${alphas[l]}; expected > 0`);
  const w = Array.from(alphas, (a) => a ** beta);
  if (!w.every(Number.isFinite)) throw new DataError(`alphaLoraExperts: α̂^β overflows (β = ${beta}, max α̂ = ${Math.max(...Array.from(alphas))}); expected finite weights`);
  if (rounding === 'authors') {
    const { shares, experts } = roundAlphaLoraAuthors(w, total, 'alphaLoraExperts');
    return { method: 'alphalora', experts, total: experts.reduce((a, b) => a + b, 0), shares };
  }
  const sum = w.reduce((a, b) => a + b, 0);
  const shares = w.map((x) => (x / sum) * total);
  const experts = roundWithFixups(shares, total);
  return { method: 'alphalora', experts, total: experts.reduce((a, b) => a + b, 0), shares };
}
