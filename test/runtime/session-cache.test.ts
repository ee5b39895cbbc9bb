/** The optimised-model cache of CPU sessions: saved once, loaded after, same outputs; a damaged file is replaced. */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as M from '../../src/models/index.ts';
import { createSession } from '../../src/runtime/index.ts';
import { setSessionCacheDir } from '../../src/runtime/session-cache.ts';
import { tinyBatch, tinyLlama, tinyWeights } from '../models/_tiny.ts';

test.serial('a cached optimised model gives the same gradients; a damaged cache file is rebuilt', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-ortcache-'));
  const graph = M.buildPerExampleGradGraph({ config: tinyLlama(), lora: { r: 2, alpha: 4, targets: ['q_proj', 'v_proj'] } });
  const feeds = M.feedsFor(graph, tinyWeights(graph), tinyBatch());
  const runOnce = async () => {
    const s = await createSession({ model: graph.model, device: 'cpu:0', threads: 1 });
    try { return await s.run(feeds); } finally { await s.release(); }
  };
  const same = (a: Awaited<ReturnType<typeof runOnce>>, b: Awaited<ReturnType<typeof runOnce>>) =>
    Object.keys(a).every((k) => Buffer.compare(Buffer.from((a[k].data as Float32Array).buffer), Buffer.from((b[k].data as Float32Array).buffer)) === 0);
  try {
    setSessionCacheDir(undefined);
    const plain = await runOnce();
    setSessionCacheDir(dir, { minBytes: 1 });
    const first = await runOnce();
    const files = await readdir(dir);
    t.is(files.length, 1, files.join(', '));
    t.regex(files[0], /^[0-9a-f]{40}\.onnx$/);
    const file = join(dir, files[0]);
    const made = (await stat(file)).mtimeMs;
    const second = await runOnce();
    t.is((await stat(file)).mtimeMs, made, 'the second session loads the saved model, not a new one');
    t.true(same(plain, first) && same(plain, second), 'outputs bit-identical with and without the cache');

    await writeFile(file, 'not an onnx model');
    const third = await runOnce();
    t.true(same(plain, third));
    t.not((await readFile(file, 'utf8')).slice(0, 17), 'not an onnx model', 'the damaged file was replaced');
    t.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
  } finally {
    setSessionCacheDir(undefined);
    await rm(dir, { recursive: true, force: true });
  }
});
