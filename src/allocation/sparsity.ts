/**
 * Layer-wise sparsity allocation (SCIENCE.md §3b), global target S, band ε:
 *
 *   s = |metric_1..L|; s̃ = minmax(s) → [0, 1]; s̃ = SavitzkyGolay(s̃, 7, 3, 'interp') (optional)
 *   φ_l = η · ( minmax(s̃)_l · ((1 + ε) − (1 − ε)) + (1 − ε) )
 *   η such that Σ_l φ_l d_l = S · Σ_l d_l      (d_l = prunable parameters of layer l)
 *   φ_l ≤ cap (0.99)
 *
 * Clipping (`clip`):
 *   - 'clip' (default): φ_l > cap is set to cap and η is NOT solved again — the authors' code
 *     (`ww_sparsity` in LayerIF's pruning code, HadiAskari/LayerIF_Pruning_New lib/prune.py;
 *     AlphaPruning's own copy has no clip at all) and SCIENCE.md §3b. The realised
 *     parameter-weighted sparsity is then below S when a layer clips (reported as `realised`).
 *   - 'resolve': a clipped layer is fixed at the cap and η is solved again over the remaining
 *     layers (repeated until no new layer clips), so the weighted mean equals S exactly.
 * Both need S ≤ cap. A constant metric gives φ_l = S everywhere.
 * Higher metric → more pruning (LayerIF: worse-trained layer; AlphaPruning: larger α̂).
 * The linear map and η follow the authors' operation order (s1 = 1 − ε, s2 = 1 + ε).
 */
import { ConfigError, DataError } from '../errors.ts';
import { checkScores } from './apportion.ts';
import { savgolFilter } from './savgol.ts';

export interface SparsityAllocation {
  method: 'uniform' | 'layerif' | 'alphapruning' | 'owl';
  /** φ_l per layer. */
  sparsity: number[];
  target: number;
  /** Realised parameter-weighted global sparsity Σ φ_l d_l / Σ d_l. */
  realised: number;
  /** Layers fixed at the cap. */
  clipped: number[];
}

export function checkTarget(target: number, what: string): void {
  if (!(target > 0 && target < 1)) throw new ConfigError(`${what}: target sparsity S = ${target}; expected a number in (0, 1)`);
}

export function checkSizes(sizes: ArrayLike<number>, layers: number, what: string): void {
  if (sizes.length !== layers) throw new DataError(`${what}: ${sizes.length} layer sizes for ${layers} layers; expected one size per layer`);
  for (let l = 0; l < layers; l++) if (!(sizes[l] > 0) || !Number.isFinite(sizes[l])) throw new DataError(`${what}: size of layer ${l} is ${sizes[l]}; expected a positive number of parameters`);
}

export function weightedMean(values: ArrayLike<number>, sizes: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let l = 0; l < values.length; l++) { num += values[l] * sizes[l]; den += sizes[l]; }
  return num / den;
}

/** φ_l = S for every layer. */
export function uniformSparsity({ target, layers, sizes }: { target: number; layers: number; sizes?: ArrayLike<number> }): SparsityAllocation {
  checkTarget(target, 'uniformSparsity');
  if (sizes) checkSizes(sizes, layers, 'uniformSparsity');
  return { method: 'uniform', sparsity: new Array(layers).fill(target), target, realised: target, clipped: [] };
}

export interface MapToSparsityArgs {
  metric: ArrayLike<number>;
  sizes: ArrayLike<number>;
  target: number;
  /** Band ε: 0.3 with magnitude pruning, 0.1 with Wanda/SparseGPT. */
  epsilon?: number;
  /** Savitzky–Golay smoothing; `null` disables it. Shrunk to the largest odd window ≤ L for short models. */
  smooth?: { window: number; polyorder: number } | null;
  /** Upper clip (default 0.99). */
  cap?: number;
  /** 'clip' (default, the authors' rule: clip, no re-solving) or 'resolve' (re-solve η so Σ φ_l d_l = S Σ d_l). */
  clip?: SparsityClip;
}

export type SparsityClip = 'clip' | 'resolve';

/** The §3b mapping from a per-layer metric to per-layer sparsities (method-agnostic core). */
export function mapToSparsity({ metric, sizes, target, epsilon = 0.3, smooth = { window: 7, polyorder: 3 }, cap = 0.99, clip = 'clip' }: MapToSparsityArgs): { sparsity: number[]; clipped: number[] } {
  checkScores(metric, 'sparsity metric');
  const L = metric.length;
  checkSizes(sizes, L, 'sparsity allocation');
  checkTarget(target, 'sparsity allocation');
  if (!(epsilon > 0 && epsilon < 1)) throw new ConfigError(`sparsity allocation: ε = ${epsilon}; expected 0 < ε < 1`);
  if (!(cap > 0 && cap <= 1)) throw new ConfigError(`sparsity allocation: cap = ${cap}; expected 0 < cap ≤ 1`);
  if (clip !== 'clip' && clip !== 'resolve') throw new ConfigError(`sparsity allocation: clip = ${JSON.stringify(clip)}; expected 'clip' (default) or 'resolve'`);
  if (target > cap) throw new ConfigError(`sparsity allocation: target S = ${target} exceeds the per-layer cap ${cap}; unreachable`);
  const s = Array.from(metric, Math.abs);
  const minmax = (v: number[]) => {
    const lo = Math.min(...v), hi = Math.max(...v);
    return hi > lo ? v.map((x) => (x - lo) / (hi - lo)) : null;
  };
  let scaled = minmax(s);
  if (scaled && smooth) {
    const window = Math.min(smooth.window, L % 2 === 1 ? L : L - 1);
    const polyorder = Math.min(smooth.polyorder, window - 1);
    if (window >= 3) scaled = minmax(Array.from(savgolFilter(scaled, window, polyorder)));
  }
  // Authors' order: ((m − min)/(max − min)) · (s2 − s1) + s1.
  const s1 = 1 - epsilon, s2 = 1 + epsilon;
  const base = scaled ? scaled.map((x) => x * (s2 - s1) + s1) : new Array(L).fill(1);
  const clipped = new Set<number>();
  const phi = new Array<number>(L);
  const total = Array.from(sizes).reduce((a, b) => a + b, 0);
  if (clip === 'clip') {
    let weighted = 0;
    for (let l = 0; l < L; l++) weighted += sizes[l] * base[l];
    const eta = (total * target) / weighted;
    for (let l = 0; l < L; l++) {
      phi[l] = base[l] * eta;
      if (phi[l] > cap) { phi[l] = cap; clipped.add(l); }
    }
    return { sparsity: phi, clipped: [...clipped] };
  }
  for (;;) {
    let free = 0, fixed = 0;
    for (let l = 0; l < L; l++) clipped.has(l) ? (fixed += cap * sizes[l]) : (free += base[l] * sizes[l]);
    const eta = (target * total - fixed) / free;
    let changed = false;
    for (let l = 0; l < L; l++) {
      if (clipped.has(l)) { phi[l] = cap; continue; }
      phi[l] = eta * base[l];
      if (phi[l] > cap) { clipped.add(l); changed = true; }
    }
    if (!changed) break;
  }
  return { sparsity: phi, clipped: [...clipped].sort((a, b) => a - b) };
}

/** LayerIF sparsity from layer scores S_l (higher = worse-trained = pruned more). */
export function layerIfSparsity(args: Omit<MapToSparsityArgs, 'metric'> & { scores: ArrayLike<number> }): SparsityAllocation {
  const { sparsity, clipped } = mapToSparsity({ ...args, metric: args.scores });
  return { method: 'layerif', sparsity, target: args.target, realised: weightedMean(sparsity, args.sizes), clipped };
}

/**
 * AlphaPruning: the same mapping on per-layer α̂ (higher α̂ → more pruning). Smoothing is off by
 * default, as in the AlphaPruning code (pass `smooth` to enable).
 */
export function alphaPruningSparsity(args: Omit<MapToSparsityArgs, 'metric'> & { alphas: ArrayLike<number> }): SparsityAllocation {
  const { sparsity, clipped } = mapToSparsity({ smooth: null, ...args, metric: args.alphas });
  return { method: 'alphapruning', sparsity, target: args.target, realised: weightedMean(sparsity, args.sizes), clipped };
}
