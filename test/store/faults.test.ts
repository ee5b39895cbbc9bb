/**
 * Store faults (issue 12) on a real temp store: a truncated blob or shard, one flipped byte in a
 * small and in a large blob, a manifest whose blob is gone, a full disk (ENOSPC injected into the
 * store's writes). Each is detected with a message naming the stage/key/file and what was
 * expected; the stage is recomputed (runStage in Temporal's mock activity environment) or fails
 * clearly; nothing half-written is ever read as valid. Extends test/store/artifacts.test.ts.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ArtifactStore, refOf, FULL_VERIFY_BYTES, type ArtifactFile, type ArtifactStoreOptions } from '../../src/store/artifacts.ts';
import { nodeIO, isTempName, type AtomicIO } from '../../src/store/atomic.ts';
import { resumeShard, readShard, type GradientIndex, type ShardEntry } from '../../src/influence/gradient-store.ts';
import { MissingArtifactError, TransientError } from '../../src/errors.ts';
import type { CacheKeyParts } from '../../src/store/cache-key.ts';
import { createStageActivities, type StageOutcome } from '../../activities/stage.ts';
import { TrackingOutbox } from '../../src/tracking/outbox.ts';
import { paths } from '../../src/config/env.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import type { StagePlan } from '../../src/config/plan.ts';
import type { StageImpl } from '../../src/store/stage-context.ts';

const parts = (stage = 's'): CacheKeyParts => ({ stage, version: 1, slice: { settings: {} }, upstream: {} });
const KEY = 'f'.repeat(12) + '0'.repeat(52);
const newStore = async (t: ExecutionContext, options?: ArtifactStoreOptions) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-faults-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return new ArtifactStore(dir, options);
};
/** Deterministic bytes, different per seed. */
const bytesOf = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
const flipByte = async (path: string, at: number) => {
  const b = await readFile(path);
  b[at] ^= 0x01;
  await writeFile(path, b);
};
const tempFiles = async (root: string) => (await readdir(root, { recursive: true })).filter((f) => isTempName(f.split('/').pop()!));

test('a truncated blob: the lookup says corrupt naming stage, key, file and both sizes; the reader refuses it', async (t) => {
  const store = await newStore(t);
  const m = await store.commit({ key: KEY, parts: parts('gradients'), kind: 'x', files: { 'index.json': '{"a":' + '1'.repeat(1000) + '}' } });
  const path = store.blobPath(m.files['index.json'].sha256);
  await truncate(path, 600);
  const r = await store.lookup(KEY);
  if (r.status !== 'corrupt') return t.fail(`expected corrupt, got ${r.status}`);
  t.regex(r.reason, /stage gradients \(key ffffffffffff\) file index\.json: blob .*: expected 1006 bytes, found 600/);
  t.true(r.reason.includes(path));
  const err = await t.throwsAsync(store.read(refOf(m), 'index.json'), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /file index\.json: blob .* is corrupt: expected 1006 bytes, found 600; it will not be used/);
});

test('a truncated shard: the lookup of its stage says corrupt, a retry rejects it, the reader refuses it', async (t) => {
  const store = await newStore(t);
  const f0 = await store.commitShard(KEY, 0, bytesOf(3000, 0), { set: 'train', rows: 2 });
  const f1 = await store.commitShard(KEY, 1, bytesOf(3000, 1), { set: 'train', rows: 2 });
  const m = await store.commit({ key: KEY, parts: parts('gradients'), kind: 'gradients', files: { 'index.json': '{}' } });
  t.deepEqual(m.shards, { '00000': f0, '00001': f1 }, 'the manifest lists the stage\'s shards (not its reference)');
  t.deepEqual(Object.keys(refOf(m).files), ['index.json']);
  t.is((await store.lookup(KEY)).status, 'hit');

  await truncate(store.blobPath(f1.sha256), 1000);
  const r = await store.lookup(KEY);
  if (r.status !== 'corrupt') return t.fail(`expected corrupt, got ${r.status}`);
  t.regex(r.reason, /stage gradients \(key ffffffffffff\) shard 00001: blob .*: expected 3000 bytes, found 1000/);
  const d = await resumeShard(store, KEY, 1, { set: 'train', rows: 2 });
  t.true('compute' in d && d.compute === 'rejected' && /shard 1 of stage key ffffffffffff: blob .*: expected 3000 bytes, found 1000/.test(d.reason));
  const entry: ShardEntry = { ...f1, index: 1, set: 'train', rowOffset: 2, rows: 2 };
  const index = { units: [], embedding: null } as unknown as GradientIndex;
  const err = await t.throwsAsync(readShard(store, index, entry), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /gradient shard 1 \(train rows 2\.\.3\): blob .* is corrupt: expected 3000 bytes, found 1000/);
});

test('one flipped byte in a small blob: the lookup re-hashes it and says corrupt with both hashes', async (t) => {
  const store = await newStore(t);
  const m = await store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'w.bin': bytesOf(4096, 3) } });
  const path = store.blobPath(m.files['w.bin'].sha256);
  await flipByte(path, 4000);
  const r = await store.lookup(KEY);
  if (r.status !== 'corrupt') return t.fail(`expected corrupt, got ${r.status}`);
  t.regex(r.reason, new RegExp(`stage s \\(key ffffffffffff\\) file w\\.bin: blob .* is corrupt: expected sha256 ${m.files['w.bin'].sha256}, found [0-9a-f]{64}`));
  t.true(existsSync(path), 'a lookup only reads: it moves nothing');
});

test('one flipped byte in a large blob: the lookup checks its size only, the reader refuses it and moves it aside, the next lookup misses it', async (t) => {
  // A lowered threshold plays a > 16 MiB blob without writing one.
  const store = await newStore(t, { fullVerifyBytes: 1024 });
  t.is((await newStore(t)).fullVerifyBytes, FULL_VERIFY_BYTES);
  const data = bytesOf(8192, 4);
  const m = await store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'g.bin': data } });
  const path = store.blobPath(m.files['g.bin'].sha256);
  await flipByte(path, 5000);
  t.is((await store.lookup(KEY)).status, 'hit', 'same size: a large blob is hashed by its readers, not by the lookup');
  const err = await t.throwsAsync(store.read(refOf(m), 'g.bin'), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /stage s \(key ffffffffffff\) file g\.bin: blob .* is corrupt: expected sha256 [0-9a-f]{64}, found [0-9a-f]{64}; it will not be used \(moved to .*quarantine.*; a new run recomputes the stage that wrote it\)/);
  t.false(existsSync(path), 'the corrupt blob is out of its content address');
  t.is((await readdir(join(store.root, 'quarantine'))).length, 1);
  const r = await store.lookup(KEY);
  t.true(r.status === 'corrupt' && /file g\.bin: blob .* does not exist \(expected 8192 bytes\)/.test(r.reason));
  // Recomputing the stage (same bytes) repairs it.
  await store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'g.bin': data } });
  t.deepEqual(new Uint8Array(await store.read(refOf(m), 'g.bin')), data);
});

test('resume: a committed shard is reused only when it verifies byte for byte (large shards too)', async (t) => {
  const store = await newStore(t, { fullVerifyBytes: 1024 });
  const expect = { set: 'train' as const, rows: 4 };
  t.deepEqual(await resumeShard(store, KEY, 0, expect), { compute: 'new' });
  const f0 = await store.commitShard(KEY, 0, bytesOf(4096, 0), expect);
  t.deepEqual(await resumeShard(store, KEY, 0, expect), { reuse: f0 });

  // A flipped byte in a shard larger than the lookup's hashing threshold: the size is right, the hash is not.
  await flipByte(store.blobPath(f0.sha256), 100);
  const flipped = await resumeShard(store, KEY, 0, expect);
  t.true('compute' in flipped && flipped.compute === 'rejected');
  t.regex((flipped as { reason: string }).reason, /shard 0 of stage key ffffffffffff: blob .* is corrupt: expected sha256 [0-9a-f]{64}, found [0-9a-f]{64}/);
  t.is(await store.committedShard(KEY, 0), undefined);
  // Recommitting the same bytes replaces the corrupt blob in place.
  t.deepEqual(await store.commitShard(KEY, 0, bytesOf(4096, 0), expect), f0);
  t.deepEqual(await resumeShard(store, KEY, 0, expect), { reuse: f0 });

  // Blob gone; torn record; a record for another slice of the plan.
  const f1 = await store.commitShard(KEY, 1, bytesOf(100, 1), expect);
  await rm(store.blobPath(f1.sha256));
  t.regex((await resumeShard(store, KEY, 1, expect) as { reason: string }).reason, /shard 1 of stage key ffffffffffff: blob .* does not exist \(expected 100 bytes\)/);
  await writeFile(store.shardPath(KEY, 2), '{"sha256":"ab');
  t.regex((await resumeShard(store, KEY, 2, expect) as { reason: string }).reason, /shard 2 of stage key ffffffffffff: record .*00002\.json is not valid JSON/);
  await store.commitShard(KEY, 3, bytesOf(100, 3), { set: 'influence', rows: 4 });
  t.regex((await resumeShard(store, KEY, 3, expect) as { reason: string }).reason, /shard 3 .*: the record is for set influence, 4 rows; expected set train, 4 rows/);
  // A record without metadata (older writer): the hash decides.
  const f4 = await store.commitShard(KEY, 4, bytesOf(100, 4));
  t.deepEqual(await resumeShard(store, KEY, 4, expect), { reuse: f4 });
});

test('a manifest whose blob is missing: the lookup says corrupt naming the file and its expected size; the reader says it does not exist', async (t) => {
  const store = await newStore(t);
  const m = await store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'a.txt': 'hello', 'b.txt': 'world!' } });
  const path = store.blobPath(m.files['b.txt'].sha256);
  await rm(path);
  const r = await store.lookup(KEY);
  t.deepEqual(r, { status: 'corrupt', reason: `stage s (key ffffffffffff) file b.txt: blob ${path} does not exist (expected 6 bytes)` });
  const err = await t.throwsAsync(store.read(refOf(m), 'b.txt'), { instanceOf: MissingArtifactError });
  t.regex(err!.message, /file b\.txt: blob .* does not exist \(expected 6 bytes, sha256 [0-9a-f]{64}\)/);
  t.is((await store.read(refOf(m), 'a.txt')).toString(), 'hello', 'the other file still reads');
});

/** An io whose writes fail with ENOSPC after writing half their bytes, while `full` (and `where` matches). */
function fullDisk() {
  const disk = { full: false, where: (_path: string) => true, failures: 0 };
  const io: Partial<AtomicIO> = {
    writeFile: async (path, data) => {
      if (!disk.full || !disk.where(path)) return nodeIO.writeFile(path, data);
      disk.failures++;
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      await writeFile(path, bytes.subarray(0, bytes.byteLength >> 1), { flag: 'wx' });
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    },
  };
  return { disk, io };
}

test('a full disk: commit fails with a TransientError naming the file; no manifest, no partial blob, no temp file; a later commit succeeds', async (t) => {
  const { disk, io } = fullDisk();
  const store = await newStore(t, { io });
  const files = { 'a.txt': 'x'.repeat(5000), 'b.bin': bytesOf(3000, 5) };
  disk.full = true;
  const err = await t.throwsAsync(store.commit({ key: KEY, parts: parts(), kind: 'x', files }), { instanceOf: TransientError });
  t.regex(err!.message, /^commit of stage s \(key ffffffffffff\) file a\.txt: writing blob .* \(5000 bytes\) failed: ENOSPC: no space left on device, write — the disk holding the artifact store is full; no manifest was written, so nothing of the stage is committed/);
  t.true((err as TransientError).retryable);
  t.is(((err as Error).cause as NodeJS.ErrnoException).code, 'ENOSPC');
  t.is((await store.lookup(KEY)).status, 'missing');
  t.false(existsSync(store.manifestPath(KEY)));
  t.deepEqual(await readdir(join(store.root, 'blobs'), { recursive: true }).then((l) => l.filter((f) => f.length > 3)), [], 'no blob under a final name');
  t.deepEqual(await tempFiles(store.root), [], 'the half-written temp file is removed');

  // Space for the blobs, none for the manifest: the blobs are stored, the stage still not committed.
  disk.where = (p) => p.includes(`${KEY}.json`); // the manifest's temp file
  const err2 = await t.throwsAsync(store.commit({ key: KEY, parts: parts(), kind: 'x', files }), { instanceOf: TransientError });
  t.regex(err2!.message, /^commit of stage s \(key ffffffffffff\): writing manifest .*\.json failed: ENOSPC.*no manifest was written/);
  t.is((await store.lookup(KEY)).status, 'missing');
  t.deepEqual(await tempFiles(store.root), []);

  disk.full = false;
  const m = await store.commit({ key: KEY, parts: parts(), kind: 'x', files });
  t.is((await store.lookup(KEY)).status, 'hit');
  t.is((await store.read(refOf(m), 'a.txt')).toString(), files['a.txt']);
  t.deepEqual(await tempFiles(store.root), []);
  t.is(disk.failures, 2);
});

test('a full disk while repairing a corrupt blob or committing a shard: the old bytes stay unusable, the shard uncommitted', async (t) => {
  const { disk, io } = fullDisk();
  const store = await newStore(t, { io });
  const m = await store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'a.txt': 'hello world' } });
  await writeFile(store.blobPath(m.files['a.txt'].sha256), 'hello_world');
  disk.full = true;
  await t.throwsAsync(store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'a.txt': 'hello world' } }), { instanceOf: TransientError });
  t.is((await store.lookup(KEY)).status, 'corrupt', 'the corrupt blob is still found corrupt, not taken for the failed rewrite');

  const err = await t.throwsAsync(store.commitShard(KEY, 0, bytesOf(2000, 6), { set: 'train', rows: 1 }), { instanceOf: TransientError });
  t.regex(err!.message, /^shard 0 of stage key ffffffffffff: writing blob .* \(2000 bytes\) failed: ENOSPC.*the shard is not committed/);
  t.deepEqual(await resumeShard(store, KEY, 0, { set: 'train', rows: 1 }), { compute: 'new' });
  // Blob stored, record not: still not committed.
  disk.where = (p) => p.includes('.shards');
  const err2 = await t.throwsAsync(store.commitShard(KEY, 0, bytesOf(2000, 6), { set: 'train', rows: 1 }), { instanceOf: TransientError });
  t.regex(err2!.message, /writing shard record .*00000\.json failed: ENOSPC/);
  t.deepEqual(await resumeShard(store, KEY, 0, { set: 'train', rows: 1 }), { compute: 'new' });
  t.deepEqual(await tempFiles(store.root), []);
  disk.full = false;
  const f = await store.commitShard(KEY, 0, bytesOf(2000, 6), { set: 'train', rows: 1 });
  t.deepEqual(await resumeShard(store, KEY, 0, { set: 'train', rows: 1 }), { reuse: f });
});

test('a crash in the middle of a write leaves only a temp file: lookups, shard records and commits ignore it', async (t) => {
  const store = await newStore(t);
  const f0 = await store.commitShard(KEY, 0, bytesOf(500, 7), { set: 'train', rows: 1 });
  // What a killed writer leaves: half a blob, half a shard record, half a manifest, each under a temp name.
  const half = 'cd'.repeat(32);
  await writeFile(join(dirname(store.blobPath(f0.sha256)), `.${half}.1234.deadbeef0000.tmp`), bytesOf(10, 8));
  await writeFile(join(store.root, 'stages', `${KEY}.shards`, '.00001.json.1234.deadbeef0000.tmp'), '{"sha256":"');
  await writeFile(join(store.root, 'stages', `.${KEY}.json.1234.deadbeef0000.tmp`), '{"format":"layerflow.man');
  t.is((await store.lookup(KEY)).status, 'missing');
  t.deepEqual(await store.shardRecords(KEY), { '00000': f0 });
  t.deepEqual(await resumeShard(store, KEY, 1, { set: 'train', rows: 1 }), { compute: 'new' });
  const m = await store.commit({ key: KEY, parts: parts(), kind: 'x', files: { 'a.txt': 'a' } });
  t.deepEqual(m.shards, { '00000': f0 });
  t.is((await store.lookup(KEY)).status, 'hit');
});

// ---- The stage activity: a fault found by the lookup is ledgered `corrupt` and the stage recomputed.

interface Ledger { outcome: string; reason?: string; shard?: number }

async function stageHarness(t: ExecutionContext, impl: StageImpl) {
  const home = await mkdtemp(join(tmpdir(), 'lf-faults-stage-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const def: PipelineDef = { name: 'p', description: '', model: z.object({}), task: z.object({}), stages: [] };
  const { runStage } = createStageActivities({ home, outbox: new TrackingOutbox(paths.outbox(home)), pipelines: async () => ({ p: { def, stages: { s: impl } } }) });
  const stage: StagePlan = {
    name: 's', kind: 'x', key: KEY, parts: parts(), needs: [], device: false,
    retry: { maximumAttempts: 1, initialIntervalMs: 1, backoffCoefficient: 1, maximumIntervalMs: 1 }, timeoutMs: 60_000, heartbeatMs: 60_000,
  };
  const run = () => new MockActivityEnvironment().run(runStage, { sweep: 'sw', pipeline: 'p', cellId: 'c', cellKey: 'ck', cellParams: {}, stage, inputs: {}, device: 'cpu:0' }) as Promise<StageOutcome>;
  const ledger = async () => (await readFile(paths.events(home, 'sw'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Ledger);
  return { run, ledger, store: new ArtifactStore(paths.store(home)) };
}

test('runStage: a manifest whose blob is gone is ledgered corrupt (with the reason) and the stage recomputed', async (t) => {
  let runs = 0;
  const h = await stageHarness(t, async () => { runs++; return { files: { 'out.txt': 'result' } }; });
  const first = await h.run();
  t.is(first.status, 'computed');
  const path = h.store.blobPath(first.ref.files['out.txt'].sha256);
  await rm(path);
  const second = await h.run();
  t.is(second.status, 'computed');
  t.is(runs, 2);
  t.deepEqual((await h.ledger()).map((l) => l.outcome), ['started', 'computed', 'corrupt', 'started', 'computed']);
  t.is((await h.ledger())[2].reason, `stage s (key ffffffffffff) file out.txt: blob ${path} does not exist (expected 6 bytes)`);
  t.is((await h.store.read(second.ref, 'out.txt')).toString(), 'result');
});

test('runStage, sharded stage: a shard lost or corrupted after the commit makes the next run recompute that shard only', async (t) => {
  const computed: number[] = [];
  const expect = { set: 'train' as const, rows: 2 };
  const shard = (i: number) => bytesOf(2048, 10 + i);
  const impl: StageImpl = async (ctx) => {
    const entries: ArtifactFile[] = [];
    let reused = 0, rejected = 0;
    for (let i = 0; i < 3; i++) {
      const d = await resumeShard(ctx.store, ctx.key, i, expect);
      if ('reuse' in d) { entries.push(d.reuse); reused++; continue; }
      if (d.compute === 'rejected') rejected++;
      computed.push(i);
      entries.push(await ctx.store.commitShard(ctx.key, i, shard(i), expect));
    }
    return { files: { 'index.json': JSON.stringify(entries) }, metrics: { reused, rejected } };
  };
  const h = await stageHarness(t, impl);
  const first = await h.run();
  t.deepEqual(computed, [0, 1, 2]);
  const entries = JSON.parse((await h.store.read(first.ref, 'index.json')).toString()) as ArtifactFile[];

  // Shard 1's blob deleted: the lookup misses it, the rerun recomputes it and reuses 0 and 2.
  await rm(h.store.blobPath(entries[1].sha256));
  const second = await h.run();
  t.is(second.status, 'computed');
  t.deepEqual(computed, [0, 1, 2, 1]);
  t.deepEqual(second.metrics, { reused: 2, rejected: 1 });
  const lines = await h.ledger();
  // Each committed shard is a line: the first run's three, then only the recomputed shard 1.
  t.deepEqual(lines.map((l) => (l.outcome === 'shard' ? `shard ${l.shard}` : l.outcome)), ['started', 'shard 0', 'shard 1', 'shard 2', 'computed', 'corrupt', 'started', 'shard 1', 'computed']);
  t.regex(lines[5].reason!, /stage s \(key ffffffffffff\) shard 00001: blob .* does not exist \(expected 2048 bytes\)/);

  // One flipped byte in shard 2 after the commit: the size is right, so the lookup hits; the
  // reader refuses it and moves it aside, and the next run recomputes shard 2.
  await flipByte(h.store.blobPath(entries[2].sha256), 7);
  t.is((await h.run()).status, 'cached');
  await t.throwsAsync(h.store.readBlob(entries[2], 'shard 2'), { instanceOf: MissingArtifactError, message: /shard 2: blob .* is corrupt/ });
  const fourth = await h.run();
  t.is(fourth.status, 'computed');
  t.deepEqual(computed, [0, 1, 2, 1, 2]);
  t.deepEqual(new Uint8Array(await h.store.readBlob(entries[2])), shard(2));
  t.is((await h.run()).status, 'cached');
});
