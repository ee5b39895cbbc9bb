/**
 * Test helper: writes a minimal GGUF v3 file from typed key/values and raw tensor bytes, so tests
 * can feed hand-constructed quantisation blocks (and broken files) to the reader.
 */
import { GgufValueType } from '../../src/weights/gguf.ts';

export type Kv = [key: string, type: number, value: unknown, elemType?: number];
export interface RawGgufTensor { name: string; ne: number[]; type: number; data: Uint8Array }

export function buildGguf(kvs: Kv[], tensors: RawGgufTensor[], alignment = 32): Uint8Array {
  const parts: Buffer[] = [];
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: number | bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s: string) => { const b = Buffer.from(s, 'utf8'); u64(b.length); parts.push(b); };
  const val = (type: number, v: unknown, elemType?: number): void => {
    const b = Buffer.alloc(8);
    switch (type) {
      case GgufValueType.UINT8: b.writeUInt8(v as number); parts.push(b.subarray(0, 1)); return;
      case GgufValueType.INT8: b.writeInt8(v as number); parts.push(b.subarray(0, 1)); return;
      case GgufValueType.UINT16: b.writeUInt16LE(v as number); parts.push(b.subarray(0, 2)); return;
      case GgufValueType.INT16: b.writeInt16LE(v as number); parts.push(b.subarray(0, 2)); return;
      case GgufValueType.UINT32: b.writeUInt32LE(v as number); parts.push(b.subarray(0, 4)); return;
      case GgufValueType.INT32: b.writeInt32LE(v as number); parts.push(b.subarray(0, 4)); return;
      case GgufValueType.FLOAT32: b.writeFloatLE(v as number); parts.push(b.subarray(0, 4)); return;
      case GgufValueType.BOOL: b.writeUInt8(v ? 1 : 0); parts.push(b.subarray(0, 1)); return;
      case GgufValueType.STRING: str(v as string); return;
      case GgufValueType.UINT64: b.writeBigUInt64LE(BigInt(v as number)); parts.push(b); return;
      case GgufValueType.INT64: b.writeBigInt64LE(BigInt(v as number)); parts.push(b); return;
      case GgufValueType.FLOAT64: b.writeDoubleLE(v as number); parts.push(b); return;
      case GgufValueType.ARRAY: {
        const arr = v as unknown[];
        u32(elemType!); u64(arr.length);
        for (const x of arr) val(elemType!, x);
        return;
      }
      default: parts.push(b.subarray(0, 4)); // deliberately bogus payload for unknown types
    }
  };
  u32(0x46554747); u32(3); u64(tensors.length); u64(kvs.length);
  for (const [k, t, v, et] of kvs) { str(k); u32(t); val(t, v, et); }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    str(t.name); u32(t.ne.length); for (const d of t.ne) u64(d); u32(t.type);
    offsets.push(offset); u64(offset);
    offset = Math.ceil((offset + t.data.length) / alignment) * alignment;
  }
  const head = Buffer.concat(parts);
  const dataStart = Math.ceil(head.length / alignment) * alignment;
  const out = new Uint8Array(dataStart + offset);
  out.set(head, 0);
  tensors.forEach((t, i) => out.set(t.data, dataStart + offsets[i]));
  return out;
}
