/**
 * Random projection of per-example gradients (a compressed gradient store, LoGra / LESS style):
 * each influence unit's flattened per-sample gradient g ∈ ℝ^d is stored as y = P g ∈ ℝ^k, k ≪ d,
 * with one seeded random matrix P per unit. Influence formulas (SCIENCE.md §2) only read inner
 * products of gradients of the same unit, and E[(P a)·(P b)] = a·b (Johnson–Lindenstrauss), so every
 * method runs unchanged on the stored y; the error of one inner product has standard deviation
 * ≈ ‖a‖‖b‖/√k, whatever d is.
 *
 * The matrix: Rademacher, P_ij = ±1/√k with independent fair signs (Achlioptas 2003). Chosen over a
 * Gaussian matrix because (1) the same JL guarantee with a slightly *smaller* inner-product variance,
 * Var[(Pa)·(Pb)] = (‖a‖²‖b‖² + (a·b)² − 2 Σ_j a_j² b_j²) / k (Gaussian: without the last term);
 * (2) its generator is integer arithmetic only — 32 signs per 32-bit word of a keyed integer hash —
 * so the matrix is bit-identical on every platform and Node version (no Math.log/cos, no float
 * rounding in the generator), and ~30× cheaper to generate than Box–Muller normals; (3) the entries
 * are exact in float32.
 *
 * The generator (`layerflow.rademacher/1`), reproduced by test/fixtures/scripts/projection_reference.py:
 *   key   (k1, k2) from the stage seed and the unit's name: h = FNV-1a-32(UTF-8 name),
 *         k1 = mix(h ^ mix(seed)), k2 = mix(k1 ^ 0x9e3779b9)       (mix = lowbias32, a bijection of uint32)
 *   word  w(t) = mix((mix(t ^ k1) + k2) mod 2³²), t = j · ⌈k/32⌉ + ⌊i/32⌋
 *   entry P_ij = (bit (i mod 32) of w(t) ? +1 : −1) / √k
 * Column j of P (row j of Pᵀ) depends on its own words only: any column block can be generated alone,
 * so a unit too large for one k × d matrix in memory is projected block by block (projection-engine.ts)
 * and no matrix is ever stored — the index records (kind, generator, seed, from, to) and that is enough
 * to rebuild it. A counter-based hash instead of a sequential PRNG also keeps units independent: two
 * units never share a stretch of one stream, whatever their sizes.
 *
 * Dense vs factorised (LoGra): for a LoRA unit the gradient is a small matrix (A: r × d_in, B: d_out × r;
 * SmolLM2 r = 4: d = 2304 or 768), so a dense k × d projection of the flattened vector costs k·d / 8
 * bytes of signs, ≤ 1.3 MB as float32 at k = d/16 — cheap — and has the best accuracy per stored value.
 * A Kronecker (input ⊗ output side) projection would only pay off for d in the millions; the
 * block-by-block evaluation keeps memory bounded for large d instead.
 *
 * The sparse sign matrix (`matrix: sjlt`, generator `layerflow.sjlt/1`; Kane & Nelson's sparse JL
 * transform with one nonzero per column, i.e. a CountSketch with balanced buckets, as GraSS uses for
 * gradient stores): the d coordinates, padded to D' = k·m with m = ⌈d/k⌉, are shuffled by a seeded
 * permutation and cut into k buckets of m; each stored value is the ±1-signed sum of its bucket. Every
 * coordinate lands in exactly one bucket with sign² = 1, so E[(S a)·(S b)] = a·b with no scale; two
 * coordinates share a bucket with probability q = (m − 1)/(D' − 1) < 1/k, and
 * Var[(Sa)·(Sb)] = q (‖a‖²‖b‖² + (a·b)² − 2 Σ_j a_j² b_j²) — the dense matrix's variance with 1/k → q.
 * Cost O(d) per row (a gather, a sign, a sum) against O(k·d), and the layout is d int32 + d float32 per
 * unit, cached for the whole stage: with LoRA on all seven projections (2.4 M values per sample) the
 * dense matrices are 7.6 GB, regenerated for every shard. Heavier tails than the dense matrix for a
 * gradient concentrated on a few coordinates (a bucket can pair two large ones); the bench measures
 * what that costs in ρ.
 *
 * The word embedding (sparse token rows, SCIENCE.md §1): each token row (width D) is projected by one
 * k_E × D matrix of the same kind (`rademacher-rows`), the token ids kept. That is P = I_vocab ⊗ P_E, a
 * block-diagonal JL projection: inner products stay unbiased, rows of different tokens never mix (no
 * cross-token noise), and the rows stay sparse. `embedding: false` stores WE rows unprojected.
 *
 * DataInf's damping (SCIENCE.md §2) λ_l = 0.1 · Σ_i ‖g_i‖² / (n · d_l) is the mean squared entry of the
 * *original* gradient. On a projected store it is computed with the original d_l (index `from`) and the
 * projected norms (E‖P g‖² = ‖g‖²): `projectedDamping`. Using the stored size k instead would make λ
 * d/k times larger — a different regulariser, which also re-weights units of different d/k inside a
 * block's mean.
 */
import { z } from 'zod';
import { ConfigError, DataError } from '../errors.ts';
import { dataInfDamping } from './datainf.ts';

/** Generator id recorded in the index; a new generator gets a new id (stores stay readable). */
export const PROJECTION_GENERATOR = 'layerflow.rademacher/1';
/** The sparse sign matrix (`matrix: sjlt`; see sjltLayout). */
export const SJLT_GENERATOR = 'layerflow.sjlt/1';
export type ProjectionGenerator = typeof PROJECTION_GENERATOR | typeof SJLT_GENERATOR;
const GENERATORS: Record<'rademacher' | 'sjlt', ProjectionGenerator> = { rademacher: PROJECTION_GENERATOR, sjlt: SJLT_GENERATOR };

/** `stages.gradients.projection`: exactly one of `dim` or `factor`. */
export const ProjectionSettings = z.strictObject({
  /** Seed of every unit's matrix (a unit's matrix also depends on its name). */
  seed: z.number().int().min(0).max(0xffffffff).default(0),
  /** Stored values per sample of each dense unit: k = min(dim, d). For WE rows, values per token row: min(dim, D). */
  dim: z.number().int().min(1).optional(),
  /** Shrink factor per unit: k = ⌈d / factor⌉ (WE rows: ⌈D / factor⌉). */
  factor: z.number().min(1).optional(),
  /** Project the word-embedding rows too (false: store them unprojected). */
  embedding: z.boolean().default(true),
  /**
   * Calibrated projection (calibration-basis.ts): the gradients of the first N training samples — or,
   * with 'influence', of the whole influence set — span a basis per dense unit (up to ⌊k/2⌋ directions)
   * whose coordinates are stored exactly; the rest of the k values randomly project what lies outside
   * it. 'influence' makes every inner product with an influence gradient exact (TracIn, cosine, each
   * NDR matrix entry) but ties the store to its influence set, as the stage key already does; N keeps
   * the store query-independent (LESS-style). Absent: a plain random projection.
   */
  calibration: z.union([z.number().int().min(1), z.literal('influence')], {
    error: 'expected a number of training samples (an integer ≥ 1, e.g. 16) or "influence"',
  }).optional(),
  /**
   * The random matrix: `sjlt` (the default: a sparse sign matrix with one ±1 per column, sjltLayout;
   * O(d) per row and a small layout per unit) or `rademacher` (dense ±1/√k, O(k·d) per row, its k × d
   * matrix regenerated per shard when over the projector's cache). The same inner-product variance up
   * to (m−1)/(D′−1) against 1/k, and the same ρ in bench/README.md ("Sparse sign projection"), at
   * ~2× (LoRA q, v) to ~30× (all seven projections) less projection time. Also the random part of a
   * calibrated projection. Part of the key (the default too: stores made before it was are not reused).
   */
  matrix: z.enum(['rademacher', 'sjlt'], { error: 'expected sjlt (sparse signs, one per column; the default) or rademacher (dense ±1/√k)' }).default('sjlt'),
}).refine((p) => (p.dim === undefined) !== (p.factor === undefined), {
  message: 'expected exactly one of dim (stored values per unit, e.g. 144) or factor (shrink factor per unit, e.g. 16)',
});
export type ProjectionSettings = z.output<typeof ProjectionSettings>;

/** How one unit's stored gradient was made from the original (recorded per unit in index.json). */
export interface UnitProjection {
  /**
   * `rademacher`: y = P g of the flattened per-sample gradient, P [to × from].
   * `rademacher-rows`: every token row of the sparse word-embedding gradient, P [to × from] with from = D.
   * `calibrated`: y = [Uᵀg ; P (g − UUᵀg)], U [from × rank] the store's basis (calibration-basis.ts),
   * P [(to − rank) × from] generated as for `rademacher` with to − rank rows.
   */
  kind: 'rademacher' | 'rademacher-rows' | 'calibrated';
  /**
   * The random matrix family: `layerflow.rademacher/1` (dense) or `layerflow.sjlt/1` (sparse signs). The
   * kind names the layout (the names predate the sparse family: `rademacher` is any dense unit's P g).
   */
  generator: ProjectionGenerator;
  seed: number;
  /** Original values per sample (per token row for `rademacher-rows`). */
  from: number;
  /** Stored values per sample (per token row). */
  to: number;
  /** `calibrated`: how many of the stored values are coordinates in the basis (U's columns; 0 ≤ rank < to). */
  rank?: number;
}

/** The matrix of one unit: enough to regenerate it. */
export interface ProjectionSpec {
  unit: string;
  seed: number;
  from: number;
  to: number;
  /** Absent: the dense Rademacher matrix (`layerflow.rademacher/1`). */
  generator?: ProjectionGenerator;
}

/** lowbias32 (C. Wellons' hash prospector): a bijective 32-bit finaliser with good avalanche. */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** FNV-1a 32-bit hash of a string's UTF-8 bytes. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/** The (k1, k2) key of a unit's matrix. */
export function unitKey(seed: number, unit: string): [number, number] {
  checkSeed(seed);
  const k1 = mix32((fnv1a32(unit) ^ mix32(seed >>> 0)) >>> 0);
  return [k1, mix32((k1 ^ 0x9e3779b9) >>> 0)];
}

/** Word t of a unit's sign stream. */
export function signWord(k1: number, k2: number, t: number): number {
  return mix32((mix32((t ^ k1) >>> 0) + k2) >>> 0);
}

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ConfigError(`projection seed ${seed}; expected an integer in [0, 2^32 − 1]`);
}

export function checkSpec(s: ProjectionSpec): void {
  checkSeed(s.seed);
  if (!Number.isInteger(s.from) || !Number.isInteger(s.to) || s.to < 1 || s.from < 1) {
    throw new ConfigError(`projection of unit ${s.unit}: ${s.from} → ${s.to} values; expected integers ≥ 1`);
  }
  if (s.generator === SJLT_GENERATOR) {
    // Counters of the shuffle (< D') and of the signs (D' + ⌊p/32⌋) must stay uint32.
    const D = s.to * Math.ceil(s.from / s.to);
    if (D + Math.ceil(D / 32) > 0x100000000) throw new ConfigError(`projection of unit ${s.unit}: ${s.from} → ${s.to} is too large for the sparse generator (D' + ⌈D'/32⌉ ≤ 2^32)`);
    return;
  }
  if (s.generator !== undefined && s.generator !== PROJECTION_GENERATOR) throw new ConfigError(`projection of unit ${s.unit}: generator "${String(s.generator)}"; expected ${PROJECTION_GENERATOR} or ${SJLT_GENERATOR}`);
  // t = j·⌈k/32⌉ + ⌊i/32⌋ must stay a uint32 counter.
  if (s.from * Math.ceil(s.to / 32) > 0x100000000) throw new ConfigError(`projection of unit ${s.unit}: ${s.from} × ${s.to} is too large for the generator (from · ⌈to/32⌉ ≤ 2^32)`);
}

/**
 * Rows j0 … j1−1 of Pᵀ (columns of P), row-major [(j1 − j0) × to], entries ±1/√to as float32.
 * Row j depends on (seed, unit, j) only, so blocks generated apart equal the whole matrix's rows.
 */
export function projectionRows(spec: ProjectionSpec, j0 = 0, j1 = spec.from, out?: Float32Array): Float32Array {
  if (spec.generator === SJLT_GENERATOR) throw new DataError(`projection rows of unit ${spec.unit}: the sparse matrix (${SJLT_GENERATOR}) has no dense rows; use sjltLayout`);
  checkSpec(spec);
  if (!(Number.isInteger(j0) && Number.isInteger(j1) && 0 <= j0 && j0 <= j1 && j1 <= spec.from)) {
    throw new DataError(`projection rows ${j0}..${j1} of unit ${spec.unit}; expected 0 ≤ j0 ≤ j1 ≤ ${spec.from}`);
  }
  const k = spec.to, W = Math.ceil(k / 32);
  const [k1, k2] = unitKey(spec.seed, spec.unit);
  const s = Math.fround(1 / Math.sqrt(k));
  const P = out ?? new Float32Array((j1 - j0) * k);
  if (P.length < (j1 - j0) * k) throw new DataError(`projection rows: buffer of ${P.length} values for ${(j1 - j0)} × ${k}`);
  // The entries as IEEE bits, written branch-free: +s with the sign bit set where the word's bit is 0
  // (the same values as `bit ? s : −s`, ~4× faster; all-7-projection LoRA units regenerate GBs per shard).
  const bitsOf = new Uint32Array(new Float32Array([s]).buffer)[0];
  const U = new Uint32Array(P.buffer, P.byteOffset, P.length);
  for (let j = j0; j < j1; j++) {
    const o = (j - j0) * k;
    for (let w = 0; w < W; w++) {
      const bits = signWord(k1, k2, j * W + w);
      const i0 = o + w * 32, n = Math.min(32, k - w * 32);
      for (let b = 0; b < n; b++) U[i0 + b] = bitsOf | ((~bits >>> b) << 31);
    }
  }
  return P;
}

/**
 * The sparse sign matrix of a unit (`layerflow.sjlt/1`; see the header): its D' = k·m positions,
 * m = ⌈d/k⌉, position p in bucket (output value) ⌊p/m⌋, holding input coordinate `coord[p]` with sign
 * `sign[p]` (±1; 0 where the position is padding, coord[p] ≥ d, then coord[p] is set to 0).
 *   y_b = Σ_{p = b·m}^{b·m + m − 1} sign[p] · g[coord[p]]
 */
export interface SjltLayout { k: number; m: number; coord: Int32Array; sign: Float32Array }

/**
 * coord is a uniformly random permutation of [0, D') (Durstenfeld's shuffle: for i = D'−1 … 1, swap i
 * with j = ⌊w(i) · (i + 1) / 2³²⌋, w the unit's word stream); sign[p] is bit (p mod 32) of word
 * D' + ⌊p/32⌋ of the same stream (+1 when set). Deterministic by (seed, unit, d, k).
 */
export function sjltLayout(spec: ProjectionSpec): SjltLayout {
  checkSpec({ ...spec, generator: SJLT_GENERATOR });
  const { from: d, to: k } = spec, m = Math.ceil(d / k), D = k * m;
  const [k1, k2] = unitKey(spec.seed, spec.unit);
  const coord = new Int32Array(D);
  for (let p = 0; p < D; p++) coord[p] = p;
  for (let i = D - 1; i >= 1; i--) {
    const j = mulHi32(signWord(k1, k2, i), i + 1);
    const t = coord[i]; coord[i] = coord[j]; coord[j] = t;
  }
  const sign = new Float32Array(D);
  for (let w = 0; w * 32 < D; w++) {
    const bits = signWord(k1, k2, D + w);
    for (let b = 0, p = w * 32; b < 32 && p < D; b++, p++) {
      if (coord[p] >= d) coord[p] = 0; // padding: sign 0
      else sign[p] = (bits >>> b) & 1 ? 1 : -1;
    }
  }
  return { k, m, coord, sign };
}

/** ⌊w · n / 2³²⌋ for uint32 w and 1 ≤ n ≤ 2³², exactly (the product exceeds 2⁵³). */
export function mulHi32(w: number, n: number): number {
  const hi = (w >>> 16) * n, lo = (w & 0xffff) * n; // each < 2⁴⁸
  const hiLow = hi % 65536;
  return (hi - hiLow) / 65536 + Math.floor((hiLow * 65536 + lo) / 0x100000000);
}

/** The whole P [to × from] (row-major), for tests and small units. */
export function projectionMatrix(spec: ProjectionSpec): Float64Array {
  if (spec.generator === SJLT_GENERATOR) {
    const { k, m, coord, sign } = sjltLayout(spec);
    const P = new Float64Array(k * spec.from);
    for (let p = 0; p < k * m; p++) if (sign[p] !== 0) P[Math.floor(p / m) * spec.from + coord[p]] = sign[p];
    return P;
  }
  const Pt = projectionRows(spec);
  const P = new Float64Array(spec.to * spec.from);
  for (let j = 0; j < spec.from; j++) for (let i = 0; i < spec.to; i++) P[i * spec.from + j] = Pt[j * spec.to + i];
  return P;
}

/**
 * Plain-TS reference: Y = X Pᵀ for X [rows × from] row-major → [rows × to], float64 accumulation.
 * The stage uses the ONNX projector (projection-engine.ts); this is its test reference.
 */
export function projectRowsReference(spec: ProjectionSpec, X: ArrayLike<number>, rows: number): Float64Array {
  const { from, to } = spec;
  if (X.length !== rows * from) throw new DataError(`projection of unit ${spec.unit}: ${X.length} values for ${rows} rows of ${from}`);
  if (spec.generator === SJLT_GENERATOR) {
    const { m, coord, sign } = sjltLayout(spec);
    const Y = new Float64Array(rows * to);
    for (let r = 0; r < rows; r++) for (let p = 0; p < to * m; p++) Y[r * to + Math.floor(p / m)] += sign[p] * X[r * from + coord[p]];
    return Y;
  }
  const Pt = projectionRows(spec);
  const Y = new Float64Array(rows * to);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < from; j++) {
      const x = X[r * from + j];
      if (x === 0) continue;
      const o = j * to;
      for (let i = 0; i < to; i++) Y[r * to + i] += x * Pt[o + i];
    }
  }
  return Y;
}

/** Stored size of a unit of `d` values under the settings: d itself when projecting would not shrink it. */
export function projectedSize(d: number, p: Pick<ProjectionSettings, 'dim' | 'factor'>): number {
  if (!Number.isInteger(d) || d < 1) throw new DataError(`projected size of a unit with d = ${d}; expected an integer ≥ 1`);
  if ((p.dim === undefined) === (p.factor === undefined)) throw new ConfigError('projection: expected exactly one of dim or factor');
  const k = p.dim !== undefined ? p.dim : Math.ceil(d / p.factor!);
  if (!(Number.isInteger(k) && k >= 1)) throw new ConfigError(`projection: dim ${p.dim} / factor ${p.factor}; expected dim an integer ≥ 1 or factor ≥ 1`);
  return Math.min(k, d);
}

/**
 * A unit's projection record, or undefined when it is stored as it is (k ≥ d). A dense unit under
 * `calibration` is `calibrated` with the rank its basis got (`rank`, ≤ ⌊k/2⌋; calibratedRank).
 */
export function unitProjection(unit: string, d: number, p: ProjectionSettings, kind: UnitProjection['kind'] = 'rademacher', rank?: number): UnitProjection | undefined {
  const to = projectedSize(d, p);
  if (to >= d) return undefined;
  const u: UnitProjection = { kind, generator: GENERATORS[p.matrix ?? 'sjlt'], seed: p.seed, from: d, to, ...(kind === 'calibrated' ? { rank: rank ?? 0 } : {}) };
  checkSpec(randomPart(unit, u));
  return u;
}

/** Most basis directions a calibrated unit of stored size k keeps from N calibration samples: half of k at most, so the random part keeps ≥ k/2 values. */
export const calibratedRank = (k: number, samples: number): number => Math.min(samples, Math.floor(k / 2));

/** The random part of a unit's projection: P [(to − rank) × from] (the whole P for the Rademacher kinds). */
export function randomPart(unit: string, pr: UnitProjection): ProjectionSpec {
  return { unit, seed: pr.seed, from: pr.from, to: pr.to - (pr.kind === 'calibrated' ? pr.rank! : 0), generator: pr.generator };
}

/** Check a projection record read from an index (a store written by another version, or edited). */
export function checkUnitProjection(unit: string, pr: UnitProjection, storedWidth: number): void {
  if (pr.generator !== PROJECTION_GENERATOR && pr.generator !== SJLT_GENERATOR) throw new DataError(`gradient store: unit ${unit} was projected by generator "${pr.generator}"; this version knows "${PROJECTION_GENERATOR}" and "${SJLT_GENERATOR}"`);
  if (pr.kind !== 'rademacher' && pr.kind !== 'rademacher-rows' && pr.kind !== 'calibrated') throw new DataError(`gradient store: unit ${unit} has projection kind "${String(pr.kind)}"; expected rademacher, rademacher-rows or calibrated`);
  if (pr.to !== storedWidth) throw new DataError(`gradient store: unit ${unit} is projected to ${pr.to} values but stores ${storedWidth}`);
  if (pr.kind === 'calibrated' && !(Number.isInteger(pr.rank) && pr.rank! >= 0 && pr.rank! < pr.to)) throw new DataError(`gradient store: calibrated unit ${unit} has rank ${String(pr.rank)}; expected an integer in [0, ${pr.to - 1}]`);
  try {
    checkSpec(randomPart(unit, pr));
  } catch (e) {
    throw new DataError(`gradient store: ${(e as Error).message}`);
  }
}

/**
 * DataInf damping on projected gradients (see the header): λ = scale · Σ_i ‖P g_i‖² / (n · d_original),
 * an unbiased estimate of the unprojected λ_l.
 */
export function projectedDamping(a: { sumNormSq: number; n: number; originalD: number; scale?: number; unit?: string }): number {
  return dataInfDamping({ sumNormSq: a.sumNormSq, n: a.n, d: a.originalD, scale: a.scale, unit: a.unit });
}
