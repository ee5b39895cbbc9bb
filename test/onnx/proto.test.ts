import test from 'ava';
import { GraphBuilder, add } from '../../src/onnx/index.ts';
import { ProtoWriter } from '../../src/onnx/proto.ts';

const bytes = (w: ProtoWriter) => Array.from(w.finish());

test('varints follow the protobuf wire format', (t) => {
  t.deepEqual(bytes(new ProtoWriter().varint(1)), [1]);
  t.deepEqual(bytes(new ProtoWriter().varint(300)), [0xac, 0x02]);
  t.deepEqual(bytes(new ProtoWriter().varint(2 ** 35)), [0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
  // int64 -1: ten bytes of two's complement
  t.deepEqual(bytes(new ProtoWriter().varint(-1)), [...Array(9).fill(0xff), 0x01]);
});

test('fields: tag = field << 3 | wire type; fixed32 floats little-endian; nested lengths', (t) => {
  t.deepEqual(bytes(new ProtoWriter().int(1, 8)), [0x08, 0x08]);
  t.deepEqual(bytes(new ProtoWriter().int(20, 2)), [0xa0, 0x01, 0x02]);
  t.deepEqual(bytes(new ProtoWriter().float32(2, 1)), [0x15, 0x00, 0x00, 0x80, 0x3f]);
  t.deepEqual(bytes(new ProtoWriter().string(2, 'ab')), [0x12, 0x02, 0x61, 0x62]);
  const inner = new ProtoWriter().int(1, 150);
  t.deepEqual(bytes(new ProtoWriter().message(3, inner)), [0x1a, 0x03, 0x08, 0x96, 0x01]);
});

// Independent decoder of the wire format, to read back the top of a model.
function decode(buf: Uint8Array): Map<number, (bigint | Uint8Array)[]> {
  const out = new Map<number, (bigint | Uint8Array)[]>();
  let p = 0;
  const varint = (): bigint => {
    let r = 0n, s = 0n;
    for (;;) {
      const b = buf[p++];
      r |= BigInt(b & 0x7f) << s;
      s += 7n;
      if (!(b & 0x80)) return r;
    }
  };
  while (p < buf.length) {
    const tag = Number(varint());
    const field = tag >> 3, wire = tag & 7;
    let v: bigint | Uint8Array;
    if (wire === 0) v = varint();
    else if (wire === 2) { const n = Number(varint()); v = buf.subarray(p, p + n); p += n; }
    else if (wire === 5) { v = buf.subarray(p, p + 4); p += 4; }
    else throw new Error(`wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), v]);
  }
  return out;
}

test('ModelProto carries ir_version 8, opset 17 and the graph', (t) => {
  const g = new GraphBuilder({ name: 'tiny' });
  g.output(add(g.input('x', 'float32', ['n']), 1), 'y');
  const m = decode(g.toModel());
  t.deepEqual(m.get(1), [8n]); // ir_version
  const opset = decode(m.get(8)![0] as Uint8Array);
  t.deepEqual(opset.get(2), [17n]);
  const graph = decode(m.get(7)![0] as Uint8Array);
  t.is(new TextDecoder().decode(graph.get(2)![0] as Uint8Array), 'tiny');
  const ops = graph.get(1)!.map((n) => new TextDecoder().decode(decode(n as Uint8Array).get(4)![0] as Uint8Array));
  t.deepEqual(ops, ['Add', 'Identity']);
  t.is(graph.get(5)!.length, 1); // the scalar constant 1 is an initializer
});
