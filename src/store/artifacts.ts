import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { nodeIO, writeFileAtomic, type AtomicIO } from './atomic.ts';
import { canonicalJson, sha256, sha256File } from './hash.ts';
import type { CacheKeyParts } from './cache-key.ts';
import { DataError, MissingArtifactError, TransientError } from '../errors.ts';

/** One file of a stage artifact, as named in its manifest. */
export interface ArtifactFile {
  sha256: string;
  size: number;
  /** Optional tensor metadata, e.g. { dtype: 'F32', shape: [64, 4096] }. */
  meta?: Record<string, unknown>;
}

/** What crosses Temporal: a small reference, never the bytes (DESIGN.md contract 1). */
export interface ArtifactRef {
  key: string;
  stage: string;
  kind: string;
  files: Record<string, ArtifactFile>;
}

export interface Manifest extends ArtifactRef {
  format: 'layerflow.manifest/1';
  parts: CacheKeyParts;
  metrics: Record<string, number>;
  /** Metric series by step (e.g. one value per layer); absent in older manifests. */
  series?: Record<string, number[]>;
  /**
   * Shards the stage committed while it ran (commitShard; e.g. gradient shards), by shard number:
   * part of the artifact, so a lookup checks them, but not of the reference (it stays small).
   * Absent in older manifests and for stages without shards.
   */
  shards?: Record<string, ArtifactFile>;
  createdAt: string;
  /** sha256 of the canonical JSON of every other field: a torn or edited manifest fails. */
  digest: string;
}

export type Lookup =
  | { status: 'hit'; manifest: Manifest }
  | { status: 'missing' }
  | { status: 'corrupt'; reason: string };

/** A committed shard as a retry finds it: verified (every byte re-hashed), missing, or unusable and why. */
export type ShardStatus =
  | { status: 'ok'; file: ArtifactFile }
  | { status: 'missing' }
  | { status: 'corrupt'; reason: string };

export interface StageOutput {
  key: string;
  parts: CacheKeyParts;
  kind: string;
  files: Record<string, FileContent>;
  metrics?: Record<string, number>;
  series?: Record<string, number[]>;
}

export type FileContent = Uint8Array | string | { data: Uint8Array | string; meta?: Record<string, unknown> };

export interface ArtifactStoreOptions {
  /** The file-system calls of every write (blobs, manifests, shard records); a test plays a full disk here. */
  io?: Partial<AtomicIO>;
  /** Blobs up to this many bytes are re-hashed by every lookup (default FULL_VERIFY_BYTES). */
  fullVerifyBytes?: number;
}

/**
 * Content-addressed artifact store (DESIGN.md contract 3).
 *   blobs/ab/<sha256>          immutable file contents
 *   stages/<key>.json          manifest of one stage result; written last, so it is the commit point
 *   stages/<key>.shards/N.json record of one shard committed while the stage ran (resume journal)
 *   quarantine/                blobs a reader found corrupt, moved out of the way
 * Every read verifies checksums; corrupt bytes are reported, never returned. A write that fails
 * (a full disk) leaves no manifest and nothing under a blob's final name.
 */
export class ArtifactStore {
  readonly io: AtomicIO;
  readonly fullVerifyBytes: number;

  constructor(readonly root: string, options: ArtifactStoreOptions = {}) {
    this.io = { ...nodeIO, ...options.io };
    this.fullVerifyBytes = options.fullVerifyBytes ?? FULL_VERIFY_BYTES;
  }

  blobPath(hash: string): string {
    return join(this.root, 'blobs', hash.slice(0, 2), hash);
  }

  manifestPath(key: string): string {
    return join(this.root, 'stages', `${key}.json`);
  }

  /**
   * Store bytes under their hash. An existing blob is kept only if it still verifies (same size,
   * same hash); a corrupt or truncated one is replaced atomically. `what` names the file in errors.
   */
  async putBlob(data: Uint8Array | string, what = 'blob', consequence = 'the blob was not stored'): Promise<ArtifactFile> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const file: ArtifactFile = { sha256: sha256(bytes), size: bytes.byteLength };
    const path = this.blobPath(file.sha256);
    if ((await this.blobProblem(file, what, 'hash')) === undefined) return file;
    try {
      await writeFileAtomic(path, bytes, this.io);
    } catch (err) {
      throw writeFailure(`${what}: writing blob ${path} (${file.size} bytes)`, err, consequence);
    }
    return file;
  }

  /**
   * Read a blob and verify its size and hash; throws MissingArtifactError on a missing or corrupt
   * file. A corrupt blob (its bytes do not hash to its name) is moved to quarantine/, so the next
   * lookup of the stage that wrote it misses it and the stage is recomputed.
   */
  async readBlob(file: ArtifactFile, what = 'artifact file'): Promise<Buffer> {
    const path = this.blobPath(file.sha256);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${what}: reading blob ${path} failed: ${(err as Error).message}`, { cause: err });
      throw new MissingArtifactError(`${what}: blob ${path} does not exist (expected ${file.size} bytes, sha256 ${file.sha256}); a new run recomputes the stage that wrote it`);
    }
    const actual = bytes.byteLength === file.size ? sha256(bytes) : undefined;
    if (actual === file.sha256) return bytes;
    const problem = actual === undefined ? `expected ${file.size} bytes, found ${bytes.byteLength}` : `expected sha256 ${file.sha256}, found ${actual}`;
    if (actual === undefined && sha256(bytes) === file.sha256)
      // The bytes are the blob's own: the reference is what is wrong, not the store.
      throw new DataError(`${what}: blob ${path}: the reference says ${file.size} bytes, the blob (which verifies) has ${bytes.byteLength}`);
    const moved = await this.quarantine(path, file.sha256);
    throw new MissingArtifactError(`${what}: blob ${path} is corrupt: ${problem}; it will not be used${moved ? ` (moved to ${moved}; a new run recomputes the stage that wrote it)` : ''}`);
  }

  /** Read one named file of a stage artifact, verified. */
  async read(ref: ArtifactRef, name: string): Promise<Buffer> {
    const file = ref.files[name];
    if (!file) throw new MissingArtifactError(`stage ${ref.stage} (key ${short(ref.key)}) has no file "${name}"; it has ${Object.keys(ref.files).map((f) => `"${f}"`).join(', ') || 'none'}`);
    return this.readBlob(file, fileWhat(ref.stage, ref.key, name));
  }

  async readJson<T>(ref: ArtifactRef, name: string): Promise<T> {
    return JSON.parse((await this.read(ref, name)).toString('utf8')) as T;
  }

  /**
   * Write every file, then the manifest (atomically): the manifest is the commit point. A failed
   * write leaves no manifest, so the stage is not committed. Shards committed under the key
   * (commitShard) are listed in the manifest. Returns the manifest.
   */
  async commit(out: StageOutput): Promise<Manifest> {
    const nothing = 'no manifest was written, so nothing of the stage is committed';
    const files: Record<string, ArtifactFile> = {};
    for (const [name, f] of Object.entries(out.files)) {
      const { data, meta } = typeof f === 'string' || f instanceof Uint8Array ? { data: f, meta: undefined } : f;
      const blob = await this.putBlob(data, `commit of ${fileWhat(out.parts.stage, out.key, name)}`, nothing);
      files[name] = meta ? { ...blob, meta } : blob;
    }
    const shards = await this.shardRecords(out.key);
    const body = {
      format: 'layerflow.manifest/1' as const,
      key: out.key,
      stage: out.parts.stage,
      kind: out.kind,
      files,
      parts: out.parts,
      metrics: out.metrics ?? {},
      ...(out.series && Object.keys(out.series).length ? { series: out.series } : {}),
      ...(Object.keys(shards).length ? { shards } : {}),
      createdAt: new Date().toISOString(),
    };
    const manifest: Manifest = { ...body, digest: sha256(canonicalJson(body)) };
    const path = this.manifestPath(out.key);
    try {
      await writeFileAtomic(path, JSON.stringify(manifest, null, 1), this.io);
    } catch (err) {
      throw writeFailure(`commit of stage ${out.parts.stage} (key ${short(out.key)}): writing manifest ${path}`, err, `${nothing} (its files are stored; a retry reuses them)`);
    }
    return manifest;
  }

  /**
   * A cache hit needs the manifest to verify and every blob to exist with its size; blobs up to
   * fullVerifyBytes are also re-hashed here. Larger ones and shards are hashed by every reader
   * instead (readBlob), so a hit never re-reads GBs and corrupt bytes are still never used.
   * A lookup only reads: it never moves or repairs anything.
   */
  async lookup(key: string): Promise<Lookup> {
    const path = this.manifestPath(key);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) return { status: 'missing' };
    let manifest: Manifest;
    try {
      manifest = JSON.parse(text) as Manifest;
    } catch {
      return { status: 'corrupt', reason: `manifest ${path} is not valid JSON (${text.length} bytes; torn or edited)` };
    }
    if (manifest === null || typeof manifest !== 'object' || typeof manifest.files !== 'object' || manifest.files === null)
      return { status: 'corrupt', reason: `manifest ${path} has no "files" object` };
    const { digest, ...body } = manifest;
    if (digest !== sha256(canonicalJson(body)))
      return { status: 'corrupt', reason: `manifest ${path} fails its checksum (expected digest ${digest}, found ${sha256(canonicalJson(body))})` };
    if (manifest.key !== key) return { status: 'corrupt', reason: `manifest ${path} is for key ${manifest.key}; expected ${key}` };
    for (const [name, file] of Object.entries(manifest.files)) {
      const problem = await this.checkBlob(file, fileWhat(manifest.stage, key, name));
      if (problem) return { status: 'corrupt', reason: problem };
    }
    // Manifests written before shards were listed: the stage's shard records stand in.
    const shards = manifest.shards ?? (await this.shardRecords(key));
    for (const [n, file] of Object.entries(shards)) {
      const problem = await this.blobProblem(file, `stage ${manifest.stage} (key ${short(key)}) shard ${n}`, 'size');
      if (problem) return { status: 'corrupt', reason: problem };
    }
    return { status: 'hit', manifest };
  }

  /** Why a blob cannot be used (missing, wrong size, or — up to fullVerifyBytes — wrong hash), or undefined. */
  async checkBlob(file: ArtifactFile, what: string): Promise<string | undefined> {
    return this.blobProblem(file, what, file.size > this.fullVerifyBytes ? 'size' : 'hash');
  }

  /** Why the blob of `file` is not `file`: missing, wrong size, or (depth 'hash') wrong hash; or undefined. Reads only. */
  private async blobProblem(file: ArtifactFile, what: string, depth: 'size' | 'hash'): Promise<string | undefined> {
    if (typeof file?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(file.sha256) || typeof file.size !== 'number')
      return `${what}: not a blob reference (${JSON.stringify(file)?.slice(0, 200)})`;
    const path = this.blobPath(file.sha256);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return `${what}: blob ${path} does not exist (expected ${file.size} bytes)`;
    if (st.size !== file.size) return `${what}: blob ${path}: expected ${file.size} bytes, found ${st.size} (truncated or overwritten)`;
    if (depth === 'size') return undefined;
    // Small blobs in one read; large ones streamed (a resume re-hashes shards of any size).
    const actual = await (st.size <= 2 ** 26 ? readFile(path).then(sha256) : sha256File(path)).catch((err: Error) => `unreadable (${err.message})`);
    return actual === file.sha256 ? undefined : `${what}: blob ${path} is corrupt: expected sha256 ${file.sha256}, found ${actual}`;
  }

  /**
   * Move a corrupt blob out of its content address (to quarantine/), so no reader finds it and the
   * next lookup of its stage misses it. Returns where it went, or undefined when it could not be
   * moved (already gone). A blob repaired meanwhile by a writer is put back.
   */
  private async quarantine(path: string, hash: string): Promise<string | undefined> {
    const to = join(this.root, 'quarantine', `${basename(path)}.${Date.now()}.${randomBytes(3).toString('hex')}`);
    try {
      await this.io.mkdir(join(this.root, 'quarantine'));
      await this.io.rename(path, to);
    } catch {
      return undefined;
    }
    if ((await sha256File(to).catch(() => undefined)) === hash) {
      await this.io.rename(to, path).catch(() => undefined);
      return undefined;
    }
    return to;
  }

  shardPath(key: string, index: number): string {
    return join(this.shardDir(key), `${String(index).padStart(5, '0')}.json`);
  }

  private shardDir(key: string): string {
    return join(this.root, 'stages', `${key}.shards`);
  }

  /**
   * Commit one shard of a stage that is still running (DESIGN.md contract 4): the blob first, then
   * its small record, atomically. A retry of the stage finds committed shards with `shardStatus`.
   */
  async commitShard(key: string, index: number, data: Uint8Array, meta?: Record<string, unknown>): Promise<ArtifactFile> {
    const what = `shard ${index} of stage key ${short(key)}`;
    const notCommitted = 'the shard is not committed (a retry recomputes it)';
    const blob = await this.putBlob(data, what, notCommitted);
    const file: ArtifactFile = meta ? { ...blob, meta } : blob;
    const path = this.shardPath(key, index);
    try {
      await writeFileAtomic(path, JSON.stringify(file), this.io);
    } catch (err) {
      throw writeFailure(`${what}: writing shard record ${path}`, err, notCommitted);
    }
    return file;
  }

  /**
   * A shard committed earlier, as a retry of its stage must see it before reusing it: every byte
   * of its blob is re-hashed (whatever its size), so a torn record, a missing, truncated or
   * bit-flipped blob is reported with the reason, and the shard is recomputed.
   */
  async shardStatus(key: string, index: number): Promise<ShardStatus> {
    const path = this.shardPath(key, index);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) return { status: 'missing' };
    const what = `shard ${index} of stage key ${short(key)}`;
    let file: ArtifactFile;
    try {
      file = JSON.parse(text) as ArtifactFile;
    } catch {
      return { status: 'corrupt', reason: `${what}: record ${path} is not valid JSON (${text.length} bytes)` };
    }
    const problem = await this.blobProblem(file, what, 'hash');
    return problem ? { status: 'corrupt', reason: problem } : { status: 'ok', file };
  }

  /** A shard committed earlier whose blob still verifies (fully re-hashed), or undefined (then it is recomputed). */
  async committedShard(key: string, index: number): Promise<ArtifactFile | undefined> {
    const s = await this.shardStatus(key, index);
    return s.status === 'ok' ? s.file : undefined;
  }

  /** Every readable shard record committed under `key`, by shard number (zero-padded), in order. */
  async shardRecords(key: string): Promise<Record<string, ArtifactFile>> {
    const dir = this.shardDir(key);
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^\d+\.json$/.test(n)).sort();
    const out: Record<string, ArtifactFile> = {};
    for (const n of names) {
      const file = await readFile(join(dir, n), 'utf8').then((t) => JSON.parse(t) as ArtifactFile).catch(() => undefined);
      if (typeof file?.sha256 === 'string' && typeof file.size === 'number') out[n.slice(0, -'.json'.length)] = file;
    }
    return out;
  }
}

/** Blobs up to this size are re-hashed on every cache lookup; larger ones on every read. */
export const FULL_VERIFY_BYTES = 16 * 2 ** 20;

export function refOf(m: Manifest): ArtifactRef {
  return { key: m.key, stage: m.stage, kind: m.kind, files: m.files };
}

const short = (key: string): string => key.slice(0, 12);
const fileWhat = (stage: string, key: string, name: string): string => `stage ${stage} (key ${short(key)}) file ${name}`;

/** Errors of a full disk: a retry (after space is freed) can succeed. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/**
 * A failed store write as an error naming what was written where, why, and what it leaves: a full
 * disk is a TransientError (retried with backoff); anything else keeps its error's retry semantics.
 */
function writeFailure(context: string, err: unknown, consequence: string): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const cause = err instanceof Error ? err.message : String(err);
  if (code && DISK_FULL.has(code))
    return new TransientError(`${context} failed: ${cause} — the disk holding the artifact store is full; ${consequence}. Free space; a retry continues`, { cause: err });
  return new Error(`${context} failed: ${cause}; ${consequence}`, { cause: err });
}
