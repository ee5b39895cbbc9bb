import test from 'ava';
import { mkdtemp, readdir, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore, refOf } from '../../src/store/artifacts.ts';
import { stageCacheKey, diffCacheKeyParts, type CacheKeyParts } from '../../src/store/cache-key.ts';
import { canonicalJson } from '../../src/store/hash.ts';
import { MissingArtifactError } from '../../src/errors.ts';

const parts = (over: Partial<CacheKeyParts> = {}): CacheKeyParts => ({ stage: 's', version: 1, slice: { settings: { a: 1 }, model: { id: 'm' } }, upstream: { load: 'k0' }, ...over });

test('cache key depends on every part and not on key order', (t) => {
  const k = stageCacheKey(parts());
  t.is(k, stageCacheKey({ upstream: { load: 'k0' }, slice: { model: { id: 'm' }, settings: { a: 1 } }, version: 1, stage: 's' }));
  t.not(k, stageCacheKey(parts({ version: 2 })));
  t.not(k, stageCacheKey(parts({ slice: { settings: { a: 2 }, model: { id: 'm' } } })));
  t.not(k, stageCacheKey(parts({ upstream: { load: 'k1' } })));
  t.is(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
});

test('diffCacheKeyParts names the changed fields', (t) => {
  const d = diffCacheKeyParts(parts(), parts({ slice: { settings: { a: 3 }, model: { id: 'm' } }, upstream: { load: 'k9' } }));
  t.deepEqual(d.map((x) => `${x.part}:${x.path}`), ['slice:settings.a', 'upstream:load']);
});

test('commit then lookup verifies; corrupt blobs and manifests are detected, never returned', async (t) => {
  const store = new ArtifactStore(await mkdtemp(join(tmpdir(), 'lf-store-')));
  const key = stageCacheKey(parts());
  t.is((await store.lookup(key)).status, 'missing');
  const m = await store.commit({ key, parts: parts(), kind: 'text', files: { 'a.txt': 'hello', 'b.bin': { data: new Uint8Array([1, 2, 3]), meta: { dtype: 'U8', shape: [3] } } }, metrics: { n: 1 } });
  const hit = await store.lookup(key);
  t.is(hit.status, 'hit');
  t.is((await store.read(refOf(m), 'a.txt')).toString(), 'hello');
  t.deepEqual(m.files['b.bin'].meta, { dtype: 'U8', shape: [3] });

  // Flip one byte of a blob: lookup reports corrupt, read throws.
  const blob = store.blobPath(m.files['a.txt'].sha256);
  await writeFile(blob, 'hellO');
  const bad = await store.lookup(key);
  t.is(bad.status, 'corrupt');
  await t.throwsAsync(store.read(refOf(m), 'a.txt'), { instanceOf: MissingArtifactError, message: /corrupt/ });
  // Re-putting the content repairs the blob.
  await store.putBlob('hello');
  t.is((await store.lookup(key)).status, 'hit');

  // An edited manifest fails its digest.
  const mp = store.manifestPath(key);
  await writeFile(mp, (await readFile(mp, 'utf8')).replace('"n": 1', '"n": 2'));
  t.is((await store.lookup(key)).status, 'corrupt');
});

test('atomic writes leave no temp files behind', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'lf-store-'));
  const store = new ArtifactStore(root);
  await store.commit({ key: 'k', parts: parts(), kind: 'x', files: { f: 'x'.repeat(1000) } });
  const all = await readdir(root, { recursive: true });
  t.false(all.some((f) => f.endsWith('.tmp')));
});
