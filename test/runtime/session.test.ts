import { existsSync } from 'node:fs';
import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import { GraphBuilder, add, matMul } from '../../src/onnx/index.ts';
import { createSession, cudaProviderPath, f32, f64, parseDevice } from '../../src/runtime/index.ts';

test('parseDevice accepts cpu:N and cuda:N', (t) => {
  t.deepEqual(parseDevice('cpu:0'), { kind: 'cpu', index: 0 });
  t.deepEqual(parseDevice('cuda:3'), { kind: 'cuda', index: 3 });
});

test('parseDevice rejects malformed strings with ConfigError', (t) => {
  for (const bad of ['gpu:0', 'cuda', 'cuda:', 'cpu:-1', 'cpu:x', 'CUDA:0', 'cuda:0:1', '']) {
    const e = t.throws(() => parseDevice(bad), { instanceOf: ConfigError }, bad);
    t.regex(e!.message, /expected 'cpu:N' or 'cuda:N'/);
  }
});

function tinyModel(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', 'float64', ['n', 2]);
  const w = g.initializer('w', Float64Array.from([1, 2, 3, 4]), [2, 2]);
  g.output(matMul(x, w), 'y');
  g.output(add(x, 1), 'z');
  return g.toModel();
}

test('cpu session runs with float64 in and out; fetches select outputs', async (t) => {
  const s = await createSession({ model: tinyModel(), device: 'cpu:0', threads: 2 });
  t.deepEqual(s.device, { kind: 'cpu', index: 0 });
  t.deepEqual([...s.inputNames], ['x']);
  const out = await s.run({ x: f64([1, 2, 3, 4, 5, 6], [3, 2]) });
  // [1 2; 3 4; 5 6] @ [1 2; 3 4] computed by hand
  t.deepEqual(Array.from(out.y.data as Float64Array), [7, 10, 15, 22, 23, 34]);
  t.deepEqual(out.y.dims, [3, 2]);
  const only = await s.run({ x: f64([0, 0], [1, 2]) }, ['z']);
  t.deepEqual(Object.keys(only), ['z']);
  t.deepEqual(Array.from(only.z.data as Float64Array), [1, 1]);
  await s.release();
});

test('float32 graph round trip', async (t) => {
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', [3]);
  g.output(add(x, 0.5), 'y');
  const s = await createSession({ model: g.toModel(), device: 'cpu:1' });
  const out = await s.run({ x: f32([1, 2, 3], [3]) });
  t.true(out.y.data instanceof Float32Array);
  t.deepEqual(Array.from(out.y.data as Float32Array), [1.5, 2.5, 3.5]);
});

test('bad inputs give typed errors', async (t) => {
  await t.throwsAsync(createSession({ model: tinyModel(), device: 'tpu:0' }), { instanceOf: ConfigError });
  await t.throwsAsync(createSession({ model: tinyModel(), device: 'cpu:0', threads: 0 }), { instanceOf: ConfigError });
  await t.throwsAsync(createSession({ model: Uint8Array.from([1, 2, 3]), device: 'cpu:0' }), { instanceOf: DataError });
  const s = await createSession({ model: tinyModel(), device: 'cpu:0', threads: 1 });
  await t.throwsAsync(s.run({}), { instanceOf: DataError, message: /missing feeds x/ });
  await t.throwsAsync(s.run({ x: f64([1, 2, 3], [2, 2]) }), { instanceOf: DataError, message: /3 elements/ });
  await t.throwsAsync(s.run({ x: f64([1, 2, 3], [1, 3]) }), { instanceOf: DataError });
});

test('cuda:N without the CUDA execution provider fails loudly (no CPU fallback)', async (t) => {
  if (existsSync(cudaProviderPath())) {
    t.pass('CUDA EP installed on this host; error path not reachable');
    return;
  }
  const e = await t.throwsAsync(createSession({ model: tinyModel(), device: 'cuda:0' }), { instanceOf: ConfigError });
  t.regex(e!.message, /cuda:0/);
  t.regex(e!.message, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
});
