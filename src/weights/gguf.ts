/**
 * GGUF reader (versions 2 and 3; spec: ggml/docs/gguf.md). Layout, all little-endian:
 *   u32 magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count × { string key, u32 value_type, value },
 *   tensor_count × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
 *   padding to `general.alignment` (default 32), tensor data (offsets relative to its start).
 * Strings are u64 length + UTF-8 bytes. `ne[0]` is the fastest-varying dimension, so the
 * row-major (PyTorch) shape is `ne` reversed.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { DataError } from '../errors.ts';
import { dequantize, ggmlByteSize, ggmlTypeName } from './gguf-quants.ts';

export const GgufValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

/** 64-bit integers become numbers when safe, else bigint. Arrays are plain arrays. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] fastest. */
  ne: number[];
  /** Row-major shape (ne reversed), as in PyTorch / safetensors. */
  shape: number[];
  type: number;
  typeName: string;
  /** Absolute file offset and byte size of the data. */
  offset: number;
  nbytes: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  /** Value type of each key (for arrays: `ARRAY:<element type>`), useful for tooling. */
  metadataTypes: Map<string, string>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
}

class NeedMore extends Error {}
const TYPE_NAMES = Object.fromEntries(Object.entries(GgufValueType).map(([k, v]) => [v, k])) as Record<number, string>;

class Cursor {
  pos = 0;
  private dv: DataView;
  constructor(private buf: Uint8Array, private complete: boolean, private file: string) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  private need(n: number) {
    if (this.pos + n > this.buf.byteLength) {
      if (this.complete) throw new DataError(`${this.file}: truncated GGUF header at byte ${this.pos} (needs ${n} more bytes)`);
      throw new NeedMore();
    }
  }
  u8() { this.need(1); return this.dv.getUint8(this.pos++); }
  i8() { this.need(1); return this.dv.getInt8(this.pos++); }
  u16() { this.need(2); const v = this.dv.getUint16(this.pos, true); this.pos += 2; return v; }
  i16() { this.need(2); const v = this.dv.getInt16(this.pos, true); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  i32() { this.need(4); const v = this.dv.getInt32(this.pos, true); this.pos += 4; return v; }
  f32() { this.need(4); const v = this.dv.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64() { this.need(8); const v = this.dv.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(): number | bigint { this.need(8); const v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
  i64(): number | bigint { this.need(8); const v = this.dv.getBigInt64(this.pos, true); this.pos += 8; return Number.isSafeInteger(Number(v)) ? Number(v) : v; }
  size(what: string): number {
    const v = this.u64();
    if (typeof v !== 'number' || v > this.buf.byteLength * 4 + (1 << 30)) throw new DataError(`${this.file}: implausible ${what} ${v} at byte ${this.pos - 8}`);
    return v;
  }
  str(): string {
    const n = this.size('string length');
    this.need(n);
    const s = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.pos, n).toString('utf8');
    this.pos += n;
    return s;
  }
  value(type: number, key: string): GgufValue {
    switch (type) {
      case GgufValueType.UINT8: return this.u8();
      case GgufValueType.INT8: return this.i8();
      case GgufValueType.UINT16: return this.u16();
      case GgufValueType.INT16: return this.i16();
      case GgufValueType.UINT32: return this.u32();
      case GgufValueType.INT32: return this.i32();
      case GgufValueType.FLOAT32: return this.f32();
      case GgufValueType.BOOL: { const b = this.u8(); if (b > 1) throw new DataError(`${this.file}: key "${key}": bool byte is ${b}; expected 0 or 1`); return b === 1; }
      case GgufValueType.STRING: return this.str();
      case GgufValueType.UINT64: return this.u64();
      case GgufValueType.INT64: return this.i64();
      case GgufValueType.FLOAT64: return this.f64();
      case GgufValueType.ARRAY: {
        const et = this.u32();
        const n = this.size(`array length of "${key}"`);
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(et, key);
        return out;
      }
      default: throw new DataError(`${this.file}: key "${key}": unknown GGUF value type ${type}; expected 0..12`);
    }
  }
}

/** Parses the GGUF header from `buf` (a prefix of the file when `complete` is false). */
export function parseGgufHeader(buf: Uint8Array, file: string, fileSize: number, complete = true): GgufHeader {
  const c = new Cursor(buf, complete, file);
  const magic = c.u32();
  if (magic !== 0x46554747) throw new DataError(`${file}: not a GGUF file (magic 0x${magic.toString(16)}, expected "GGUF")`);
  const version = c.u32();
  if (version !== 2 && version !== 3) throw new DataError(`${file}: GGUF version ${version} is not supported; expected 2 or 3${version > 0xffff ? ' (big-endian file?)' : ''}`);
  const nTensors = c.size('tensor count');
  const nKv = c.size('metadata count');
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, string>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str();
    const type = c.u32();
    const at = c.pos;
    metadata.set(key, c.value(type, key));
    metadataTypes.set(key, type === GgufValueType.ARRAY ? `ARRAY:${TYPE_NAMES[new DataView(buf.buffer, buf.byteOffset).getUint32(at, true)] ?? '?'}` : TYPE_NAMES[type]);
  }
  const alignment = metadata.get('general.alignment') ?? 32;
  if (typeof alignment !== 'number' || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new DataError(`${file}: general.alignment is ${String(alignment)}; expected a power of two`);
  }
  const infos: Omit<GgufTensorInfo, 'offset'>[] = [];
  const rel: number[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str();
    if (seen.has(name)) throw new DataError(`${file}: duplicate tensor name "${name}"`);
    seen.add(name);
    const nDims = c.u32();
    if (nDims < 1 || nDims > 4) throw new DataError(`${file}: tensor "${name}" has ${nDims} dimensions; expected 1..4`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(c.size(`dimension of "${name}"`));
    const type = c.u32();
    const offset = c.u64();
    if (typeof offset !== 'number' || offset % alignment !== 0) throw new DataError(`${file}: tensor "${name}" offset ${offset} is not a multiple of the alignment ${alignment}`);
    const n = ne.reduce((a, b) => a * b, 1);
    infos.push({ name, ne, shape: [...ne].reverse(), type, typeName: ggmlTypeName(type), nbytes: ggmlByteSize(type, n, `${file}: tensor "${name}"`) });
    rel.push(offset);
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const tensors = infos.map((t, i) => ({ ...t, offset: dataOffset + rel[i] }));
  const byStart = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 0; i < byStart.length; i++) {
    const t = byStart[i];
    if (t.offset + t.nbytes > fileSize) throw new DataError(`${file}: truncated file: tensor "${t.name}" needs bytes ${t.offset}..${t.offset + t.nbytes} but the file has ${fileSize}`);
    if (i > 0 && byStart[i - 1].offset + byStart[i - 1].nbytes > t.offset) throw new DataError(`${file}: tensor "${t.name}" overlaps "${byStart[i - 1].name}"`);
  }
  return { version, metadata, metadataTypes, tensors, alignment, dataOffset };
}

/** An open GGUF file: header parsed, tensor data read on demand. */
export class GgufReader {
  private constructor(readonly path: string, private readonly fh: FileHandle, readonly header: GgufHeader) {}

  static async open(path: string): Promise<GgufReader> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      for (let chunk = Math.min(size, 1 << 20); ; chunk = Math.min(size, chunk * 4)) {
        const buf = Buffer.alloc(chunk);
        await fh.read(buf, 0, chunk, 0);
        try {
          return new GgufReader(path, fh, parseGgufHeader(buf, path, size, chunk === size));
        } catch (err) {
          if (!(err instanceof NeedMore)) throw err;
        }
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get metadata() { return this.header.metadata; }
  get tensors() { return this.header.tensors; }

  tensor(name: string): GgufTensorInfo {
    const t = this.header.tensors.find((x) => x.name === name);
    if (!t) throw new DataError(`${this.path}: no tensor named "${name}"`);
    return t;
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.tensor(name);
    const data = new Uint8Array(t.nbytes);
    let done = 0;
    while (done < data.length) {
      const { bytesRead } = await this.fh.read(data, done, data.length - done, t.offset + done);
      if (bytesRead === 0) throw new DataError(`${this.path}: truncated while reading tensor "${name}"`);
      done += bytesRead;
    }
    return data;
  }

  /** Dequantised values in row-major order with the row-major shape. */
  async readFloat32(name: string): Promise<{ shape: number[]; values: Float32Array }> {
    const t = this.tensor(name);
    const n = t.ne.reduce((a, b) => a * b, 1);
    return { shape: t.shape.slice(), values: dequantize(t.type, await this.readRaw(name), n, `${this.path}: tensor "${name}"`) };
  }

  /**
   * Rows `start .. start+count-1` of a tensor, dequantised. A row is ne[0] values (row r of the
   * row-major [rows, ne0] view; tensors of more dimensions count rows over the flattened leading
   * ones, a 1-D tensor is one row). Reads only those rows' bytes, so a slice of a large embedding
   * costs what it holds. Shape [count, ne0] ([ne0 * count] for a 1-D tensor).
   */
  async readRowsFloat32(name: string, start: number, count: number): Promise<{ shape: number[]; values: Float32Array }> {
    const t = this.tensor(name);
    const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
      throw new DataError(`${this.path}: rows ${start}..${start + count - 1} of tensor "${name}" requested; it has ${rows} rows`);
    }
    const what = `${this.path}: tensor "${name}"`;
    const rowBytes = ggmlByteSize(t.type, t.ne[0], `${what} (a row of ${t.ne[0]} values)`);
    const data = new Uint8Array(rowBytes * count);
    let done = 0;
    while (done < data.length) {
      const { bytesRead } = await this.fh.read(data, done, data.length - done, t.offset + start * rowBytes + done);
      if (bytesRead === 0) throw new DataError(`${this.path}: truncated while reading tensor "${name}"`);
      done += bytesRead;
    }
    return { shape: t.ne.length === 1 ? [count * t.ne[0]] : [count, t.ne[0]], values: dequantize(t.type, data, t.ne[0] * count, what) };
  }

  async close(): Promise<void> { await this.fh.close(); }
}
