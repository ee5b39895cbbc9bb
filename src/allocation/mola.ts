/**
 * MoLA fixed expert patterns (SCIENCE.md §3a): for 32 layers and T = 160 the 8-layer groups
 * get 2-4-6-8, 5-5-5-5 or 8-6-4-2 experts per layer. For any L the pattern is applied to
 * equal groups (layer l is in group floor(l·G/L)), scaled so the total is T:
 * raw_l = T · p_{g(l)} / Σ_l' p_{g(l')}, then rounded with ±1 fix-ups (`roundWithFixups`).
 */
import { ConfigError } from '../errors.ts';
import { checkBudget, roundWithFixups } from './apportion.ts';
import type { ExpertAllocation } from './experts.ts';

export const MOLA_PATTERNS = { '2-4-6-8': [2, 4, 6, 8], '5-5-5-5': [5, 5, 5, 5], '8-6-4-2': [8, 6, 4, 2] } as const;
export type MolaPatternName = keyof typeof MOLA_PATTERNS;

export function molaExperts({ pattern, layers, total = 160 }: { pattern: MolaPatternName | number[]; layers: number; total?: number }): ExpertAllocation {
  const p = typeof pattern === 'string' ? MOLA_PATTERNS[pattern] : pattern;
  if (!p || p.length === 0 || p.some((x) => !(x > 0))) throw new ConfigError(`molaExperts: pattern ${JSON.stringify(pattern)}; expected one of ${Object.keys(MOLA_PATTERNS).join(', ')} or positive numbers`);
  checkBudget(total, layers);
  if (p.length > layers) throw new ConfigError(`molaExperts: pattern has ${p.length} groups but the model has only ${layers} layers`);
  const per = Array.from({ length: layers }, (_, l) => p[Math.floor((l * p.length) / layers)]);
  const sum = per.reduce((a, b) => a + b, 0);
  const shares = per.map((x) => (total * x) / sum);
  const experts = roundWithFixups(shares, total);
  return { method: 'mola', experts, total: experts.reduce((a, b) => a + b, 0), shares };
}
