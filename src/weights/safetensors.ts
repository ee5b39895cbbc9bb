/**
 * safetensors read/write (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`
 * (offsets relative to the byte buffer after the header), then the byte buffer, which must be
 * covered exactly by the tensors (no overlaps, no holes). Values are little-endian.
 *
 * Reads are lazy (header first, tensors on demand) so multi-GB checkpoints need not fit in one
 * Buffer. Writes are atomic. Floating tensors convert to/from Float32Array.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { DataError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from './half.ts';

/** Bytes per element of every dtype the format defines. */
export const SAFETENSORS_DTYPE_SIZE = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_SIZE;
/** Dtypes that convert to/from Float32Array here. */
export type FloatConvertible = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** One tensor: dtype, row-major shape and its raw little-endian bytes. */
export interface RawTensor { dtype: SafetensorsDtype; shape: number[]; data: Uint8Array }
/** A tensor to write given as float values, converted (with rounding for F16/BF16) to `dtype`. */
export interface FloatTensor { dtype: FloatConvertible; shape: number[]; values: Float32Array | Float64Array | number[] }
export type TensorInput = RawTensor | FloatTensor;

/** Where one tensor lives in the file. `begin`/`end` are absolute file offsets. */
export interface TensorEntry { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }

const MAX_HEADER = 100 * 1024 * 1024;
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const isDtype = (d: unknown): d is SafetensorsDtype => typeof d === 'string' && Object.hasOwn(SAFETENSORS_DTYPE_SIZE, d);
const isDim = (d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0;

/**
 * Validates a header. `file` names the file in errors; `bufferLength` is the size of the byte
 * buffer after the header (file size - 8 - N). Returns entries with absolute offsets.
 */
export function parseSafetensorsHeader(json: string, file: string, headerLength: number, bufferLength: number): { entries: TensorEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try { header = JSON.parse(json); } catch (err) {
    throw new DataError(`${file}: safetensors header is not valid JSON (${(err as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new DataError(`${file}: safetensors header must be a JSON object`);
  const metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  const base = 8 + headerLength;
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new DataError(`${file}: __metadata__ must be an object of strings`);
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw new DataError(`${file}: __metadata__.${k} is ${typeof s}; expected a string`);
        metadata[k] = s;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!t || typeof t !== 'object') throw new DataError(`${file}: tensor "${name}": entry must be an object`);
    if (!isDtype(t.dtype)) throw new DataError(`${file}: tensor "${name}": unknown dtype ${JSON.stringify(t.dtype)}; expected one of ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')}`);
    if (!Array.isArray(t.shape) || !t.shape.every(isDim)) throw new DataError(`${file}: tensor "${name}": shape ${JSON.stringify(t.shape)} must be an array of non-negative integers`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isDim) || off[0] > off[1]) {
      throw new DataError(`${file}: tensor "${name}": data_offsets ${JSON.stringify(off)} must be [begin, end] with 0 <= begin <= end`);
    }
    const want = numel(t.shape) * SAFETENSORS_DTYPE_SIZE[t.dtype];
    if (off[1] - off[0] !== want) {
      throw new DataError(`${file}: tensor "${name}": data_offsets span ${off[1] - off[0]} bytes but ${t.dtype}${JSON.stringify(t.shape)} needs ${want}`);
    }
    entries.push({ name, dtype: t.dtype, shape: t.shape.slice(), begin: base + off[0], end: base + off[1] });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = base;
  let prev = '';
  for (const e of sorted) {
    if (e.begin < cursor) throw new DataError(`${file}: tensor "${e.name}" overlaps "${prev}" (offsets ${e.begin - base}..${e.end - base} start before ${cursor - base})`);
    if (e.begin > cursor) throw new DataError(`${file}: hole in the byte buffer before tensor "${e.name}" (bytes ${cursor - base}..${e.begin - base} belong to no tensor)`);
    cursor = e.end;
    prev = e.name;
  }
  if (cursor - base > bufferLength) throw new DataError(`${file}: truncated file: tensors need ${cursor - base} data bytes but only ${bufferLength} follow the header`);
  if (cursor - base < bufferLength) throw new DataError(`${file}: ${bufferLength - (cursor - base)} trailing bytes after the last tensor`);
  return { entries, metadata };
}

/** An open safetensors file: header parsed and validated, tensors read on demand. */
export class SafetensorsReader {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly entries: Map<string, TensorEntry>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(path: string): Promise<SafetensorsReader> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      if (size < 8) throw new DataError(`${path}: truncated file: ${size} bytes, a safetensors file has at least an 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      await fh.read(lenBuf, 0, 8, 0);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER)) throw new DataError(`${path}: header length ${n} exceeds the ${MAX_HEADER}-byte limit (not a safetensors file?)`);
      const headerLength = Number(n);
      if (8 + headerLength > size) throw new DataError(`${path}: truncated file: header length ${headerLength} but only ${size - 8} bytes follow`);
      const hb = Buffer.alloc(headerLength);
      await fh.read(hb, 0, headerLength, 8);
      const { entries, metadata } = parseSafetensorsHeader(hb.toString('utf8'), path, headerLength, size - 8 - headerLength);
      return new SafetensorsReader(path, fh, new Map(entries.map((e) => [e.name, e])), metadata);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  names(): string[] { return [...this.entries.keys()]; }

  private entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) throw new DataError(`${this.path}: no tensor named "${name}"`);
    return e;
  }

  async readRaw(name: string): Promise<RawTensor> {
    const e = this.entry(name);
    const data = new Uint8Array(e.end - e.begin);
    let done = 0;
    while (done < data.length) {
      const { bytesRead } = await this.fh.read(data, done, data.length - done, e.begin + done);
      if (bytesRead === 0) throw new DataError(`${this.path}: truncated while reading tensor "${name}"`);
      done += bytesRead;
    }
    return { dtype: e.dtype, shape: e.shape.slice(), data };
  }

  async readFloat32(name: string): Promise<{ shape: number[]; values: Float32Array }> {
    const t = await this.readRaw(name);
    return { shape: t.shape, values: rawToFloat32(t, `${this.path}: tensor "${name}"`) };
  }

  async close(): Promise<void> { await this.fh.close(); }
}

/** Every tensor of an in-memory safetensors buffer (e.g. a blob from the artifact store), validated. */
export function parseSafetensorsBytes(bytes: Uint8Array, what = 'safetensors buffer'): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  if (bytes.byteLength < 8) throw new DataError(`${what}: truncated: ${bytes.byteLength} bytes, a safetensors buffer has at least an 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER) || 8 + Number(n) > bytes.byteLength) throw new DataError(`${what}: header length ${n} does not fit the ${bytes.byteLength}-byte buffer`);
  const headerLength = Number(n);
  const json = Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString('utf8');
  const { entries, metadata } = parseSafetensorsHeader(json, what, headerLength, bytes.byteLength - 8 - headerLength);
  const tensors = new Map<string, RawTensor>();
  for (const e of entries) tensors.set(e.name, { dtype: e.dtype, shape: e.shape.slice(), data: bytes.subarray(e.begin, e.end) });
  return { tensors, metadata };
}

/** Reads every tensor of a file into memory. */
export async function readSafetensors(path: string): Promise<{ tensors: Map<string, RawTensor>; metadata: Record<string, string> }> {
  const r = await SafetensorsReader.open(path);
  try {
    const tensors = new Map<string, RawTensor>();
    for (const name of r.names()) tensors.set(name, await r.readRaw(name));
    return { tensors, metadata: r.metadata };
  } finally {
    await r.close();
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Raw little-endian tensor bytes -> Float32Array (F16/BF16 exact; F64/I64 rounded to float32); always a fresh copy. */
export function rawToFloat32(t: RawTensor, what = 'tensor'): Float32Array {
  const n = numel(t.shape);
  // Little-endian hosts (every platform Node ships for): F32 is one copy of the bytes (an aligned,
  // owned buffer), BF16 one shift per value through typed views — gradient shards are GBs of these
  // (the per-value DataView reads were ~40 % of an influence stage's host time).
  if (LITTLE_ENDIAN && t.data.byteLength === n * (SAFETENSORS_DTYPE_SIZE[t.dtype] ?? 0)) {
    // Uint8Array's slice copies (a Node Buffer's own slice would be a view of its whole pool).
    if (t.dtype === 'F32') return new Float32Array(Uint8Array.prototype.slice.call(t.data).buffer);
    if (t.dtype === 'BF16') {
      const src = t.data.byteOffset % 2 === 0 ? new Uint16Array(t.data.buffer, t.data.byteOffset, n) : new Uint16Array(Uint8Array.prototype.slice.call(t.data).buffer);
      const out = new Float32Array(n), bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return out;
    }
  }
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32': for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true); break;
    case 'F64': for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true); break;
    case 'F16': for (let i = 0; i < n; i++) out[i] = f16BitsToF32(dv.getUint16(2 * i, true)); break;
    case 'BF16': for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(dv.getUint16(2 * i, true)); break;
    case 'I64': for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true)); break;
    case 'I32': for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true); break;
    case 'I16': for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true); break;
    case 'I8': for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); break;
    case 'U8': case 'BOOL': for (let i = 0; i < n; i++) out[i] = dv.getUint8(i); break;
    default: throw new DataError(`${what}: dtype ${t.dtype} cannot be converted to float32 here; supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL`);
  }
  return out;
}

/** Float values -> raw little-endian bytes of `dtype` (F16/BF16 round to nearest even; integers must be exact). */
export function float32ToRaw(t: FloatTensor, what = 'tensor'): RawTensor {
  const n = numel(t.shape);
  if (t.values.length !== n) throw new DataError(`${what}: ${t.values.length} values for shape ${JSON.stringify(t.shape)} (needs ${n})`);
  const size = SAFETENSORS_DTYPE_SIZE[t.dtype];
  if (size === undefined) throw new DataError(`${what}: unknown dtype ${JSON.stringify(t.dtype)}`);
  const data = new Uint8Array(n * size);
  const dv = new DataView(data.buffer);
  const v = t.values;
  const int = (i: number, lo: number, hi: number) => {
    const x = v[i];
    if (!Number.isInteger(x) || x < lo || x > hi) throw new DataError(`${what}: element ${i} is ${x}; ${t.dtype} needs an integer in [${lo}, ${hi}]`);
    return x;
  };
  switch (t.dtype) {
    case 'F32': for (let i = 0; i < n; i++) dv.setFloat32(4 * i, v[i], true); break;
    case 'F64': for (let i = 0; i < n; i++) dv.setFloat64(8 * i, v[i], true); break;
    case 'F16': for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToF16Bits(v[i]), true); break;
    case 'BF16': for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToBf16Bits(v[i]), true); break;
    case 'I64': for (let i = 0; i < n; i++) dv.setBigInt64(8 * i, BigInt(int(i, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)), true); break;
    case 'I32': for (let i = 0; i < n; i++) dv.setInt32(4 * i, int(i, -(2 ** 31), 2 ** 31 - 1), true); break;
    case 'I16': for (let i = 0; i < n; i++) dv.setInt16(2 * i, int(i, -32768, 32767), true); break;
    case 'I8': for (let i = 0; i < n; i++) dv.setInt8(i, int(i, -128, 127)); break;
    case 'U8': for (let i = 0; i < n; i++) dv.setUint8(i, int(i, 0, 255)); break;
    case 'BOOL': for (let i = 0; i < n; i++) dv.setUint8(i, int(i, 0, 1)); break;
  }
  return { dtype: t.dtype, shape: t.shape.slice(), data };
}

const isRaw = (t: TensorInput): t is RawTensor => 'data' in t;

/** Serialises tensors to safetensors bytes. Order: larger element size first, then name (as the reference writer). */
export function serializeSafetensors(tensors: Record<string, TensorInput> | Map<string, TensorInput>, metadata?: Record<string, string>): Uint8Array {
  const list = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)).map(([name, t]) => {
    if (name === '__metadata__') throw new DataError(`tensor name "__metadata__" is reserved`);
    const raw = isRaw(t) ? t : float32ToRaw(t, `tensor "${name}"`);
    if (!isDtype(raw.dtype)) throw new DataError(`tensor "${name}": unknown dtype ${JSON.stringify(raw.dtype)}`);
    if (!raw.shape.every(isDim)) throw new DataError(`tensor "${name}": bad shape ${JSON.stringify(raw.shape)}`);
    const want = numel(raw.shape) * SAFETENSORS_DTYPE_SIZE[raw.dtype];
    if (raw.data.byteLength !== want) throw new DataError(`tensor "${name}": ${raw.data.byteLength} bytes but ${raw.dtype}${JSON.stringify(raw.shape)} needs ${want}`);
    return { name, raw };
  });
  list.sort((a, b) => SAFETENSORS_DTYPE_SIZE[b.raw.dtype] - SAFETENSORS_DTYPE_SIZE[a.raw.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, s] of Object.entries(metadata)) if (typeof s !== 'string') throw new DataError(`__metadata__.${k} must be a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const { name, raw } of list) {
    header[name] = { dtype: raw.dtype, shape: raw.shape, data_offsets: [offset, offset + raw.data.byteLength] };
    offset += raw.data.byteLength;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - ((8 + jsonBytes) % 8)) % 8); // pad so the buffer starts 8-aligned
  const hb = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + hb.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let pos = 8 + hb.length;
  for (const { raw } of list) { out.set(raw.data, pos); pos += raw.data.byteLength; }
  return out;
}

/** Writes a safetensors file atomically (temp file, fsync, rename). */
export async function writeSafetensors(path: string, tensors: Record<string, TensorInput> | Map<string, TensorInput>, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
