/**
 * AlphaLoRA expert allocation (SCIENCE.md §3a): per-layer α̂ (mean of the block's matrices'
 * Hill estimates, see alpha-hill.ts), raw_l = α_l^β / Σ α^β · T, then round with ±1 fix-ups
 * until Σ = T (every layer keeps ≥ 1). β = 2.5 by default.
 */
import { ConfigError } from '../errors.ts';
import { checkBudget, checkScores, roundWithFixups } from './apportion.ts';
import type { ExpertAllocation } from './experts.ts';

export function alphaLoraExperts({ alphas, total = 160, beta = 2.5 }: { alphas: ArrayLike<number>; total?: number; beta?: number }): ExpertAllocation {
  checkScores(alphas, 'alphaLoraExperts alphas');
  checkBudget(total, alphas.length);
  if (!(beta > 0)) throw new ConfigError(`alphaLoraExperts: β = ${beta}; expected a positive number (default 2.5)`);
  for (let l = 0; l < alphas.length; l++) if (!(alphas[l] > 0)) throw new ConfigError(`alphaLoraExperts: α̂ of layer ${l} is ${alphas[l]}; expected > 0`);
  const w = Array.from(alphas, (a) => a ** beta);
  const sum = w.reduce((a, b) => a + b, 0);
  const shares = w.map((x) => (x / sum) * total);
  const experts = roundWithFixups(shares, total);
  return { method: 'alphalora', experts, total: experts.reduce((a, b) => a + b, 0), shares };
}
