/**
 * Learning-rate schedule: linear warmup then cosine decay, as transformers'
 * get_cosine_schedule_with_warmup (num_cycles 0.5) with an optional floor:
 *
 *   step < W:  lr = peak · step / max(1, W)
 *   else:      p = (step − W) / max(1, S − W);  lr = floor + (peak − floor) · ½(1 + cos(π·p))   (p clipped to 1)
 *
 * `step` is the 0-based index of the optimizer update (HF convention: the first update uses
 * step 0, i.e. lr 0 when W > 0). W = ceil(warmupRatio · S) unless warmupSteps is given.
 */
import { ConfigError } from '../errors.ts';

export interface CosineSchedule {
  peakLr: number;
  totalSteps: number;
  /** Fraction of totalSteps spent warming up (default 0.1). Ignored when warmupSteps is set. */
  warmupRatio?: number;
  warmupSteps?: number;
  /** Final learning rate (default 0). */
  minLr?: number;
}

export function warmupStepsOf(s: CosineSchedule): number {
  if (s.warmupSteps !== undefined) {
    if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new ConfigError(`schedule: warmupSteps is ${s.warmupSteps}; expected an integer >= 0`);
    return s.warmupSteps;
  }
  const r = s.warmupRatio ?? 0.1;
  if (!(r >= 0 && r <= 1)) throw new ConfigError(`schedule: warmupRatio is ${r}; expected a number in [0, 1]`);
  return Math.ceil(r * s.totalSteps);
}

/** Learning rate for the 0-based optimizer update `step`. */
export function cosineWithWarmup(s: CosineSchedule, step: number): number {
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 1) throw new ConfigError(`schedule: totalSteps is ${s.totalSteps}; expected a positive integer`);
  if (!(s.peakLr >= 0) || !Number.isFinite(s.peakLr)) throw new ConfigError(`schedule: peakLr is ${s.peakLr}; expected a finite number >= 0`);
  const floor = s.minLr ?? 0;
  if (!(floor >= 0 && floor <= s.peakLr)) throw new ConfigError(`schedule: minLr is ${floor}; expected 0 <= minLr <= peakLr (${s.peakLr})`);
  const w = warmupStepsOf(s);
  if (step < w) return (s.peakLr * step) / Math.max(1, w);
  const p = Math.min(1, (step - w) / Math.max(1, s.totalSteps - w));
  return floor + (s.peakLr - floor) * 0.5 * (1 + Math.cos(Math.PI * p));
}
