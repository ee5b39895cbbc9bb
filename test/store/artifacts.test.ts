import test from 'ava';
import { mkdtemp, readdir, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore, refOf, FULL_VERIFY_BYTES } from '../../src/store/artifacts.ts';
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
  const root = await mkdtemp(join(tmpdir(), 'lf-store-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = new ArtifactStore(root);
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
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = new ArtifactStore(root);
  await store.commit({ key: 'k', parts: parts(), kind: 'x', files: { f: 'x'.repeat(1000) } });
  const all = await readdir(root, { recursive: true });
  t.false(all.some((f) => f.endsWith('.tmp')));
});

test('shards: committed one by one, found again by a retry, a corrupt or torn one is recomputed', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'lf-store-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = new ArtifactStore(root);
  t.is(await store.committedShard('k', 0), undefined);
  const f0 = await store.commitShard('k', 0, new Uint8Array([1, 2, 3]), { rows: 3 });
  t.deepEqual(await store.committedShard('k', 0), f0);
  t.deepEqual(f0.meta, { rows: 3 });
  // Corrupt blob: not reported as committed.
  await writeFile(store.blobPath(f0.sha256), new Uint8Array([1, 2, 4]));
  t.is(await store.committedShard('k', 0), undefined);
  // Torn record (not JSON): not committed either.
  await writeFile(store.shardPath('k', 1), '{"sha2');
  t.is(await store.committedShard('k', 1), undefined);
});

test('lookup: large blobs are checked by size (hashed by readers), small ones re-hashed', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'lf-store-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  // The threshold lowered (default FULL_VERIFY_BYTES, 16 MiB) so "large" needs no 16 MiB writes.
  const store = new ArtifactStore(root, { fullVerifyBytes: 4096 });
  t.true(FULL_VERIFY_BYTES > 4096);
  const big = new Uint8Array(4096 + 1).fill(7);
  const m = await store.commit({ key: 'big', parts: parts(), kind: 'x', files: { 'g.bin': big } });
  t.is((await store.lookup('big')).status, 'hit');
  const path = store.blobPath(m.files['g.bin'].sha256);
  const bytes = await readFile(path);
  bytes[5] = 8; // same size, wrong content: the lookup does not re-read it, the reader refuses it
  await writeFile(path, bytes);
  t.is((await store.lookup('big')).status, 'hit');
  await t.throwsAsync(store.read(refOf(m), 'g.bin'), { instanceOf: MissingArtifactError, message: /corrupt/ });
  await writeFile(path, bytes.subarray(0, 10)); // truncated: the lookup sees it
  t.is((await store.lookup('big')).status, 'corrupt');
});
