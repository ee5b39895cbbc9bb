/**
 * The gradient store (DESIGN.md contract 4, STYLE.md §5): per-example gradients of every influence
 * unit for the training and influence sets, in safetensors shards committed one by one, plus a
 * self-describing index.
 *
 *   index.json   units [{unit, layer, kind, d, shape}], embedding {D, vocab}, shardSize, and per set
 *                (train, influence) n and its shards [{index, rowOffset, rows, sha256, size}]
 *   shard        safetensors: `g.<unit>` F32 [rows × d] per dense unit (LoRA tensors, score.weight),
 *                `loss` F32 [rows], and the word-embedding gradient as sparse rows (SCIENCE.md §1:
 *                only the rows of tokens present in the sample): `we.counts` I32 [rows] rows per
 *                sample, `we.ids` I32 [Σ counts] token ids (ascending per sample), `we.values`
 *                F32 [Σ counts × D]
 *
 * Shards are content-addressed blobs of the artifact store, listed in index.json only: the stage's
 * reference stays small however many shards there are, and every read verifies the shard's hash.
 *
 * A compressed store (`layerflow.gradients/2`, gradients setting `projection`, projection.ts) has the
 * same shard layout with fewer values: a projected unit stores `d` = its projected size and records
 * `projection: {kind, generator, seed, from, to}` (from = the original values per sample); the
 * word-embedding unit, when projected, stores token rows of width `D` = the projected width (`from` =
 * the model's hidden size) and `d` = vocab · D. The index also records the stage's `projection`
 * settings. Readers see stored sizes everywhere, so every influence method reads either format;
 * `originalD` gives the unprojected size (DataInf's λ). A store may also keep its gradient values
 * (`g.*`, `we.values`) as BF16 (`dtype: 'BF16'`, gradients setting `dtype`; format /2): float32's
 * range with an 8-bit mantissa, decoded to float32 by every reader. Format /1 (F32, no projection)
 * is unchanged and still written when neither setting is given.
 */
import { totalmem } from 'node:os';
import { ConfigError, DataError } from '../errors.ts';
import type { ArtifactFile, ArtifactRef, ArtifactStore } from '../store/artifacts.ts';
import { parseSafetensorsBytes, rawToFloat32, serializeSafetensors, type TensorInput } from '../weights/safetensors.ts';
import type { SparseRowGradient, SparseUnitGradients } from './sparse-rows.ts';
import type { UnitGradients, UnitKind } from './types.ts';
import { calibratedRank, checkUnitProjection, type ProjectionSettings, type UnitProjection } from './projection.ts';
import { calibrationBasis } from './calibration-basis.ts';

export const GRADIENT_STORE_FORMAT = 'layerflow.gradients/1';
/** A compressed store (`projection` and/or `dtype: BF16`): units may carry a projection record, values may be BF16 (see the header). */
export const GRADIENT_STORE_FORMAT_COMPRESSED = 'layerflow.gradients/2';
export type GradientStoreFormat = typeof GRADIENT_STORE_FORMAT | typeof GRADIENT_STORE_FORMAT_COMPRESSED;
export type GradientSet = 'train' | 'influence';

export interface GradientUnit {
  unit: string;
  layer: number;
  kind: UnitKind;
  /** Stored values per sample (dense units); for the embedding unit vocab · D (its dense size as stored). */
  d: number;
  /** Shape of the unit's gradient tensor (before any projection). */
  shape: number[];
  /** How the stored values were made from the gradient (format /2 only; absent = stored as computed). */
  projection?: UnitProjection;
}

export interface ShardEntry extends ArtifactFile {
  index: number;
  set: GradientSet;
  /** Position of the shard's first sample within its set. */
  rowOffset: number;
  rows: number;
}

/** Float type of the stored gradient values (losses are F32 always). */
export type GradientDtype = 'F32' | 'BF16';

export interface GradientIndex {
  format: GradientStoreFormat;
  dtype: GradientDtype;
  shardSize: number;
  /** Dense units in a fixed order (LoRA A/B per block, then the classification head). */
  units: GradientUnit[];
  /** The word-embedding unit (sparse rows), when computed. */
  embedding: (GradientUnit & { D: number; vocab: number }) | null;
  sets: Record<GradientSet, { n: number; shards: ShardEntry[] }>;
  /** What the gradients are of: per-sample mean cross-entropy under the fine-tuned checkpoint. */
  loss: string;
  /** The gradients stage's projection settings (format /2); absent or null: nothing projected. */
  projection?: ProjectionSettings | null;
  /** Calibrated stores (projection `calibration`): the file with every calibrated unit's basis U (encodeBasis). */
  basis?: BasisEntry;
  /**
   * Σ_i ‖g_i‖² over the training set of every unit (dense and WE), of the exact (unprojected, unrounded)
   * gradients: DataInf's λ without a pass over the shards (trainNormSqSums). Present when every training
   * shard's record carried its sums (stores written since session 9).
   */
  trainNormSqSum?: Record<string, number>;
}

/** A shard record's meta: its set and rows, and (since session 9) Σ‖g‖² per unit of its rows. */
export interface ShardMeta { set: GradientSet; rows: number; normSqSum?: Record<string, number> }

/** Σ of the per-shard sums in the training shards' records, or undefined when any record lacks them. */
export function trainNormSqSums(shards: ArtifactFile[], units: string[]): Record<string, number> | undefined {
  const out: Record<string, number> = Object.fromEntries(units.map((u) => [u, 0]));
  for (const sh of shards) {
    const sums = (sh.meta as Partial<ShardMeta> | undefined)?.normSqSum;
    if (!sums) return undefined;
    for (const u of units) {
      const x = sums[u];
      if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) return undefined;
      out[u] += x;
    }
  }
  return out;
}

/** The basis file of a calibrated store: committed like a shard (record number `index`, after the last gradient shard), from the first `samples` rows of `set`. */
export interface BasisEntry extends ArtifactFile {
  index: number;
  samples: number;
  set: GradientSet;
}

export const GRADIENT_BASIS_FORMAT = 'layerflow.gradient-basis/1';

/**
 * The basis file: safetensors `U.<unit>` [from × rank] per calibrated unit with rank ≥ 1 (row-major:
 * column c is direction c), in the store's dtype. BF16 rounds U; the stage projects with the decoded
 * (rounded) U, so what is stored is exactly what was used.
 */
export function encodeBasis(bases: Map<string, Float32Array | Float64Array>, units: GradientUnit[], dtype: GradientDtype, samples: number): Uint8Array {
  const t: Record<string, TensorInput> = {};
  for (const u of units) {
    const pr = u.projection;
    if (pr?.kind !== 'calibrated' || !pr.rank) continue;
    const U = bases.get(u.unit);
    if (!U || U.length !== pr.from * pr.rank) throw new DataError(`gradient basis: unit ${u.unit} has ${U?.length ?? 0} values; expected ${pr.from} × ${pr.rank}`);
    t[`U.${u.unit}`] = { dtype, shape: [pr.from, pr.rank], values: U };
  }
  return serializeSafetensors(t, { format: GRADIENT_BASIS_FORMAT, samples: String(samples) });
}

/** Calibrated unit records with the ranks their bases got (other records as they are). */
export function withBasisRanks(units: GradientUnit[], ranks: ReadonlyMap<string, number>): GradientUnit[] {
  return units.map((u) => (u.projection?.kind === 'calibrated' ? { ...u, projection: { ...u.projection, rank: ranks.get(u.unit) ?? 0 } } : u));
}

/** calibrationBasis or an engine's (GradientProjector.calibrationBasis: the same directions through ONNX GEMMs). */
export type BasisMaker = (G: Float32Array, rows: number, d: number, maxRank: number) => { U: Float64Array; rank: number } | Promise<{ U: Float64Array; rank: number }>;

/**
 * The basis file of a calibrated store (calibration-basis.ts): per calibrated unit, the basis of
 * `rowsOf(u)` — the first `samples` calibration rows, [samples × from] — with at most
 * calibratedRank(to, samples) directions. Returns the records with their ranks, the file's bytes and U
 * as stored (BF16-rounded when BF16): what the projection must use, so that stored and used agree.
 */
export async function makeBasisFile(units: GradientUnit[], rowsOf: (u: GradientUnit) => Float32Array, samples: number, dtype: GradientDtype, basisOf: BasisMaker = calibrationBasis): Promise<{ units: GradientUnit[]; ranks: Map<string, number>; bytes: Uint8Array; bases: Map<string, Float32Array> }> {
  const made = new Map<string, Float32Array>(), ranks = new Map<string, number>();
  for (const u of units) {
    if (u.projection?.kind !== 'calibrated') continue;
    const b = await basisOf(rowsOf(u), samples, u.projection.from, calibratedRank(u.projection.to, samples));
    made.set(u.unit, Float32Array.from(b.U)); // float32 at once: every unit's basis is held until the file is written
    ranks.set(u.unit, b.rank);
  }
  const ranked = withBasisRanks(units, ranks);
  const bytes = encodeBasis(made, ranked, dtype, samples);
  return { units: ranked, ranks, bytes, bases: decodeBasis(bytes, ranked, 'gradient basis') };
}

/** Every calibrated unit's U [from × rank] as float32 (units of rank 0 get an empty array). */
export function decodeBasis(bytes: Uint8Array, units: GradientUnit[], what: string): Map<string, Float32Array> {
  const { tensors, metadata } = parseSafetensorsBytes(bytes, what);
  if (metadata.format !== GRADIENT_BASIS_FORMAT) throw new DataError(`${what}: format "${metadata.format}"; expected ${GRADIENT_BASIS_FORMAT}`);
  const out = new Map<string, Float32Array>();
  for (const u of units) {
    const pr = u.projection;
    if (pr?.kind !== 'calibrated') continue;
    if (!pr.rank) { out.set(u.unit, new Float32Array(0)); continue; }
    const x = tensors.get(`U.${u.unit}`);
    if (!x) throw new DataError(`${what}: no basis "U.${u.unit}"; the gradient store index and the basis file disagree`);
    if (x.shape[0] !== pr.from || x.shape[1] !== pr.rank) throw new DataError(`${what}: U.${u.unit} is [${x.shape}]; expected [${pr.from}, ${pr.rank}]`);
    out.set(u.unit, rawToFloat32(x, `${what}: U.${u.unit}`));
  }
  return out;
}

/** The basis of a calibrated store, hash-verified by the store. */
export async function readBasis(store: ArtifactStore, index: GradientIndex): Promise<Map<string, Float32Array>> {
  if (!index.basis) throw new DataError('gradient store: no basis file (the store is not calibrated)');
  const what = `gradient basis (record ${index.basis.index})`;
  return decodeBasis(await store.readBlob(index.basis, what), index.units, what);
}

/** Unprojected values per sample of a unit (the d_l of DataInf's λ); for the embedding vocab · D. */
export function originalD(u: GradientUnit & { D?: number; vocab?: number }): number {
  if (!u.projection) return u.d;
  if (u.projection.kind === 'rademacher-rows') return u.vocab! * u.projection.from;
  return u.projection.from;
}

/** Whether any unit of the store is projected. */
export function isProjected(index: GradientIndex): boolean {
  return index.units.some((u) => u.projection) || !!index.embedding?.projection;
}

/**
 * Check an index before reading it: a known format, and projection records consistent with the stored
 * sizes (DataError otherwise, naming the unit). Format /1 stores carry no projection.
 */
export function checkGradientIndex(index: GradientIndex, what = 'gradient store index.json'): GradientIndex {
  if (!index || typeof index !== 'object') throw new DataError(`${what}: not a JSON object`);
  if (index.format !== GRADIENT_STORE_FORMAT && index.format !== GRADIENT_STORE_FORMAT_COMPRESSED) {
    throw new DataError(`${what}: format "${String(index.format)}"; expected ${GRADIENT_STORE_FORMAT} or ${GRADIENT_STORE_FORMAT_COMPRESSED}`);
  }
  if (!Array.isArray(index.units)) throw new DataError(`${what}: no units list`);
  if (index.dtype !== 'F32' && index.dtype !== 'BF16') throw new DataError(`${what}: dtype "${String(index.dtype)}"; expected F32 or BF16`);
  if (index.dtype !== 'F32' && index.format === GRADIENT_STORE_FORMAT) throw new DataError(`${what}: dtype ${index.dtype}, but format ${GRADIENT_STORE_FORMAT} stores F32 only`);
  const units = [...index.units, ...(index.embedding ? [index.embedding] : [])];
  for (const u of units) {
    if (!Number.isInteger(u.d) || u.d < 1) throw new DataError(`${what}: unit ${u.unit} has d = ${u.d}; expected an integer ≥ 1`);
    if (!u.projection) continue;
    if (index.format === GRADIENT_STORE_FORMAT) throw new DataError(`${what}: unit ${u.unit} has a projection record, but format ${GRADIENT_STORE_FORMAT} stores none`);
    const isEmbedding = u === index.embedding;
    if ((u.projection.kind === 'rademacher-rows') !== isEmbedding) throw new DataError(`${what}: unit ${u.unit} has projection kind ${u.projection.kind}; expected ${isEmbedding ? 'rademacher-rows' : 'rademacher or calibrated'}`);
    if (u.projection.kind === 'calibrated' && !(index.basis && Number.isInteger(index.basis.index) && typeof index.basis.sha256 === 'string')) throw new DataError(`${what}: unit ${u.unit} is calibrated, but the index has no basis file record`);
    checkUnitProjection(u.unit, u.projection, isEmbedding ? index.embedding!.D : u.d);
    if (isEmbedding && u.d !== index.embedding!.vocab * index.embedding!.D) throw new DataError(`${what}: embedding unit ${u.unit} has d = ${u.d}; expected vocab · D = ${index.embedding!.vocab * index.embedding!.D}`);
  }
  return index;
}

/** index.json of a gradients artifact, checked (checkGradientIndex). */
export async function readGradientIndex(store: ArtifactStore, ref: ArtifactRef): Promise<GradientIndex> {
  return checkGradientIndex(await store.readJson<GradientIndex>(ref, 'index.json'), `${ref.stage}/index.json`);
}

export interface DecodedShard {
  rows: number;
  losses: Float32Array;
  dense: Map<string, Float32Array>;
  embedding?: SparseRowGradient[];
  /**
   * Per unit (and, when projected, the embedding unit), each row's exact ‖g‖² of the gradient before
   * any projection or BF16 rounding (`n2.<unit>`, F64 [rows]). On a projected store DataInf's λ comes
   * from them (the unprojected λ exactly); on an unprojected F32 store the influence engine uses them
   * instead of a norm pass (rowNormsOfStoredRows). Absent in stores written before it.
   */
  normSq?: Map<string, Float64Array>;
}

/** A shard's bytes; `dtype` BF16 rounds the gradient values (not the losses) to bfloat16. */
export function encodeShard(s: DecodedShard, units: GradientUnit[], embeddingD?: number, dtype: GradientDtype = 'F32'): Uint8Array {
  const t: Record<string, TensorInput> = { loss: { dtype: 'F32', shape: [s.rows], values: s.losses } };
  const floats = (shape: number[], v: Float32Array): TensorInput => (dtype === 'F32'
    ? { dtype: 'F32', shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) }
    : { dtype, shape, values: v });
  for (const u of units) {
    const g = s.dense.get(u.unit);
    if (!g || g.length !== s.rows * u.d) throw new DataError(`gradient shard: unit ${u.unit} has ${g?.length ?? 0} values; expected ${s.rows} × ${u.d}`);
    t[`g.${u.unit}`] = floats([s.rows, u.d], g);
  }
  if (s.embedding) {
    const D = embeddingD!;
    const counts = Int32Array.from(s.embedding, (e) => e.rows.length);
    const total = counts.reduce((a, b) => a + b, 0);
    const ids = new Int32Array(total), values = new Float32Array(total * D);
    let o = 0;
    for (const e of s.embedding) {
      ids.set(e.rows, o);
      values.set(e.values, o * D);
      o += e.rows.length;
    }
    t['we.counts'] = { dtype: 'I32', shape: [s.rows], data: new Uint8Array(counts.buffer) };
    t['we.ids'] = { dtype: 'I32', shape: [total], data: new Uint8Array(ids.buffer) };
    t['we.values'] = floats([total, D], values);
  }
  for (const [unit, v] of s.normSq ?? []) {
    if (v.length !== s.rows) throw new DataError(`gradient shard: ‖g‖² of unit ${unit} has ${v.length} values; expected ${s.rows}`);
    t[`n2.${unit}`] = { dtype: 'F64', shape: [s.rows], data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  }
  return serializeSafetensors(t, { format: GRADIENT_STORE_FORMAT });
}

const int32 = (data: Uint8Array): Int32Array => new Int32Array(Uint8Array.from(data).buffer);

export function decodeShard(bytes: Uint8Array, units: GradientUnit[], what: string, embeddingD?: number): DecodedShard {
  const { tensors } = parseSafetensorsBytes(bytes, what);
  const get = (name: string) => {
    const x = tensors.get(name);
    if (!x) throw new DataError(`${what}: no tensor "${name}"; the gradient store index and the shard disagree`);
    return x;
  };
  const losses = rawToFloat32(get('loss'), `${what}: loss`);
  const rows = losses.length;
  const dense = new Map<string, Float32Array>();
  for (const u of units) {
    const r = get(`g.${u.unit}`);
    if (r.shape[0] !== rows || r.shape[1] !== u.d) throw new DataError(`${what}: g.${u.unit} is [${r.shape}]; expected [${rows}, ${u.d}]`);
    dense.set(u.unit, rawToFloat32(r, `${what}: g.${u.unit}`));
  }
  let embedding: SparseRowGradient[] | undefined;
  if (embeddingD !== undefined) {
    const counts = int32(get('we.counts').data), ids = int32(get('we.ids').data);
    const values = rawToFloat32(get('we.values'), `${what}: we.values`);
    embedding = [];
    let o = 0;
    for (let i = 0; i < rows; i++) {
      const c = counts[i];
      embedding.push({ rows: ids.slice(o, o + c), values: values.slice(o * embeddingD, (o + c) * embeddingD) });
      o += c;
    }
  }
  let normSq: Map<string, Float64Array> | undefined;
  for (const [name, x] of tensors) {
    if (!name.startsWith('n2.')) continue;
    if (x.dtype !== 'F64' || x.shape.length !== 1 || x.shape[0] !== rows) throw new DataError(`${what}: ${name} is ${x.dtype} [${x.shape}]; expected F64 [${rows}]`);
    (normSq ??= new Map()).set(name.slice(3), new Float64Array(Uint8Array.from(x.data).buffer));
  }
  return { rows, losses, dense, embedding, ...(normSq ? { normSq } : {}) };
}

/**
 * Read and decode one shard, hash-verified by the store: a missing or corrupt shard is a
 * MissingArtifactError naming the shard and its blob, and a corrupt blob is moved aside so the next
 * run's lookup of the gradients stage misses it and recomputes that shard.
 */
export async function readShard(store: ArtifactStore, index: GradientIndex, shard: ShardEntry): Promise<DecodedShard> {
  const what = `gradient shard ${shard.index} (${shard.set} rows ${shard.rowOffset}..${shard.rowOffset + shard.rows - 1})`;
  const bytes = await store.readBlob(shard, what);
  return decodeShard(bytes, index.units, what, index.embedding?.D);
}

/**
 * Decoded shards kept between passes over a store — the influence stage walks the training shards up
 * to three times (DataInf), and reading one again means re-hashing and re-decoding it — up to
 * `budgetBytes` of decoded arrays; the shards past the budget are read again on every pass, so memory
 * stays bounded whatever the store's size.
 */
export class ShardCache {
  /** Blob reads (each verified and decoded) and passes served from memory. */
  reads = 0;
  hits = 0;
  private readonly kept = new Map<number, DecodedShard>();
  private used = 0;
  constructor(private readonly store: ArtifactStore, private readonly index: GradientIndex, private readonly budgetBytes: number) {}

  async read(sh: ShardEntry): Promise<DecodedShard> {
    const hit = this.kept.get(sh.index);
    if (hit) {
      this.hits++;
      return hit;
    }
    const d = await readShard(this.store, this.index, sh);
    this.reads++;
    const bytes = decodedBytes(d);
    if (this.used + bytes <= this.budgetBytes) {
      this.kept.set(sh.index, d);
      this.used += bytes;
    }
    return d;
  }
}

/** Bytes held by a decoded shard's arrays. */
export function decodedBytes(d: DecodedShard): number {
  let b = d.losses.byteLength;
  for (const x of d.dense.values()) b += x.byteLength;
  for (const x of d.normSq?.values() ?? []) b += x.byteLength;
  for (const e of d.embedding ?? []) b += e.rows.byteLength + e.values.byteLength;
  return b;
}

/**
 * The shard cache's budget: LAYERFLOW_SHARD_CACHE_MB (0 turns it off), else a quarter of the host's
 * memory. A bad value is a ConfigError naming the variable.
 */
export function shardCacheBudget(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LAYERFLOW_SHARD_CACHE_MB?.trim();
  if (raw === undefined || raw === '') return Math.floor(totalmem() / 4);
  const mb = Number(raw);
  if (!Number.isFinite(mb) || mb < 0) throw new ConfigError(`LAYERFLOW_SHARD_CACHE_MB="${raw}"; expected a number of MiB ≥ 0 (0: no cache)`);
  return Math.floor(mb * 2 ** 20);
}

/** What a (re)run of the gradients stage does with shard `index` of its plan. */
export type ShardDecision =
  | { reuse: ArtifactFile }
  | { compute: 'new' }
  /** A committed shard that failed verification (torn record, missing/truncated/corrupt blob, wrong rows). */
  | { compute: 'rejected'; reason: string };

/**
 * Decide whether a committed shard can be reused by a retry (DESIGN.md contract 4): only when its
 * record reads, its blob verifies byte for byte (ArtifactStore.shardStatus) and the record is for the
 * shard the plan expects (same set and row count). Anything else is recomputed, never trusted.
 */
export async function resumeShard(store: ArtifactStore, key: string, index: number, expect: { set: GradientSet; rows: number }): Promise<ShardDecision> {
  const s = await store.shardStatus(key, index);
  if (s.status === 'missing') return { compute: 'new' };
  if (s.status === 'corrupt') return { compute: 'rejected', reason: s.reason };
  const meta = s.file.meta;
  // Records carry { set, rows } (older ones may carry nothing: the key fixes the plan).
  if (meta && (meta.set !== expect.set || meta.rows !== expect.rows))
    return { compute: 'rejected', reason: `shard ${index} of stage key ${key.slice(0, 12)}: the record is for set ${String(meta.set)}, ${String(meta.rows)} rows; expected set ${expect.set}, ${expect.rows} rows` };
  return { reuse: s.file };
}

/** The dense units of one shard as UnitGradients chunks (rowOffset within the set). */
export function shardChunks(index: GradientIndex, shard: ShardEntry, d: DecodedShard, only?: Set<string>): UnitGradients[] {
  return index.units
    .filter((u) => !only || only.has(u.unit))
    .map((u) => {
      const normSq = rowNormsOfStoredRows(index, u) ? d.normSq?.get(u.unit) : undefined;
      return { unit: u.unit, layer: u.layer, kind: u.kind, n: d.rows, d: u.d, data: d.dense.get(u.unit)!, rowOffset: shard.rowOffset, ...(normSq ? { normSq } : {}) };
    });
}

/**
 * Whether a unit's kept ‖g‖² (`n2.<unit>`) are the squared norms of its rows as stored — an unprojected
 * F32 unit — and so may stand in for a norm pass (UnitGradients.normSq). Not for projected or BF16 rows:
 * DataInf's i = k correction term cancels ⟨v, g_k⟩ only when its weight 1/(λ + ‖g_k‖²) uses the same
 * ‖g_k‖² as the stored inner products (mixing the exact norm with projected products took the worst
 * winowhy layer's ρ from 0.96 to 0.45 at factor 10), and a projected cosine is best in its own space.
 */
export function rowNormsOfStoredRows(index: GradientIndex, u: GradientUnit): boolean {
  return !u.projection && index.dtype === 'F32';
}

/** Every dense unit of a whole set in memory: unit → [n × d], with each row's ‖g‖² (`normSq`) when every shard keeps it and it is the stored rows' (rowNormsOfStoredRows). */
export async function readDenseSet(store: ArtifactStore, index: GradientIndex, set: GradientSet): Promise<Map<string, UnitGradients>> {
  const n = index.sets[set].n;
  const withNorms = new Set(index.units.filter((u) => rowNormsOfStoredRows(index, u)).map((u) => u.unit));
  const out = new Map(index.units.map((u) => [u.unit, { unit: u.unit, layer: u.layer, kind: u.kind, n, d: u.d, data: new Float32Array(n * u.d), ...(withNorms.has(u.unit) ? { normSq: new Float64Array(n) } : {}) } as UnitGradients]));
  for (const sh of index.sets[set].shards) {
    const d = await readShard(store, index, sh);
    for (const u of index.units) {
      const g = out.get(u.unit)!;
      (g.data as Float32Array).set(d.dense.get(u.unit)!, sh.rowOffset * u.d);
      if (!withNorms.has(u.unit)) continue;
      const n2 = d.normSq?.get(u.unit);
      if (n2) g.normSq!.set(n2, sh.rowOffset);
      else withNorms.delete(u.unit);
    }
  }
  for (const g of out.values()) if (!withNorms.has(g.unit)) delete g.normSq;
  return out;
}

/** The embedding unit of a whole set (sparse rows per sample). */
export async function readEmbeddingSet(store: ArtifactStore, index: GradientIndex, set: GradientSet): Promise<SparseUnitGradients> {
  const e = index.embedding;
  if (!e) throw new DataError('the gradient store has no word-embedding unit (gradients stage setting embedding: false)');
  const samples: SparseRowGradient[] = [];
  for (const sh of index.sets[set].shards) samples.push(...(await readShard(store, index, sh)).embedding!);
  return { unit: e.unit, layer: e.layer, kind: 'embedding', D: e.D, vocab: e.vocab, samples };
}
