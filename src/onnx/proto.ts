/**
 * Minimal protobuf writer (proto2 wire format): varints, fixed32, length-delimited fields.
 * A message is a list of byte chunks plus its total length, so big tensor payloads are
 * never copied until the final `finish()`.
 */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];
  length = 0;

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    this.chunks.push(Uint8Array.from(this.scratch));
    this.scratch = [];
  }
  private pushBytes(b: Uint8Array): void {
    this.flushScratch();
    this.chunks.push(b);
    this.length += b.length;
  }
  /** Unsigned LEB128 of a 64-bit value; negative numbers become 10-byte two's complement. */
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) byte |= 0x80;
      this.scratch.push(byte);
      this.length++;
    } while (x !== 0n);
    return this;
  }
  private tag(field: number, wire: number): void { this.varint((field << 3) | wire); }

  /** Field with wire type 0 (int32, int64, enum, bool). */
  int(field: number, v: number | bigint): this { this.tag(field, 0); return this.varint(v); }
  /** Field with wire type 5 (float). */
  float32(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    for (const x of b) this.scratch.push(x);
    this.length += 4;
    return this;
  }
  /** Length-delimited bytes. */
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    this.pushBytes(b);
    return this;
  }
  string(field: number, s: string): this { return this.bytes(field, new TextEncoder().encode(s)); }
  /** Embedded message. */
  message(field: number, m: ProtoWriter): this {
    this.tag(field, 2);
    this.varint(m.length);
    m.flushScratch();
    this.flushScratch();
    for (const c of m.chunks) this.chunks.push(c);
    this.length += m.length;
    return this;
  }
  finish(): Uint8Array {
    this.flushScratch();
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) { out.set(c, o); o += c.length; }
    return out;
  }
}
