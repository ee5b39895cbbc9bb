import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.ts';
import { canonicalJson, sha256 } from './hash.ts';
import type { CacheKeyParts } from './cache-key.ts';
import { MissingArtifactError } from '../errors.ts';

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
  createdAt: string;
  /** sha256 of the canonical JSON of every other field: a torn or edited manifest fails. */
  digest: string;
}

export type Lookup =
  | { status: 'hit'; manifest: Manifest }
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

/**
 * Content-addressed artifact store (DESIGN.md contract 3).
 *   blobs/ab/<sha256>     immutable file contents
 *   stages/<key>.json     manifest of one stage result; written last, so it is the commit point
 * Every read verifies checksums; corrupt bytes are reported, never returned.
 */
export class ArtifactStore {
  constructor(readonly root: string) {}

  blobPath(hash: string): string {
    return join(this.root, 'blobs', hash.slice(0, 2), hash);
  }

  manifestPath(key: string): string {
    return join(this.root, 'stages', `${key}.json`);
  }

  /** Store bytes under their hash. An existing blob is kept only if it still verifies. */
  async putBlob(data: Uint8Array | string): Promise<ArtifactFile> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const hash = sha256(bytes);
    const path = this.blobPath(hash);
    const existing = await readFile(path).catch(() => undefined);
    if (!existing || sha256(existing) !== hash) await writeFileAtomic(path, bytes);
    return { sha256: hash, size: bytes.byteLength };
  }

  /** Read a blob and verify it; throws MissingArtifactError on a missing or corrupt file. */
  async readBlob(file: ArtifactFile, what = 'artifact file'): Promise<Buffer> {
    const path = this.blobPath(file.sha256);
    const bytes = await readFile(path).catch(() => {
      throw new MissingArtifactError(`${what}: blob ${path} does not exist`);
    });
    if (bytes.byteLength !== file.size || sha256(bytes) !== file.sha256)
      throw new MissingArtifactError(`${what}: blob ${path} is corrupt (checksum mismatch); it will not be used`);
    return bytes;
  }

  /** Read one named file of a stage artifact, verified. */
  async read(ref: ArtifactRef, name: string): Promise<Buffer> {
    const file = ref.files[name];
    if (!file) throw new MissingArtifactError(`artifact ${ref.stage}/${ref.key.slice(0, 12)} has no file "${name}"`);
    return this.readBlob(file, `${ref.stage}/${name}`);
  }

  async readJson<T>(ref: ArtifactRef, name: string): Promise<T> {
    return JSON.parse((await this.read(ref, name)).toString('utf8')) as T;
  }

  /** Write every file, then the manifest (atomically). Returns the reference. */
  async commit(out: StageOutput): Promise<Manifest> {
    const files: Record<string, ArtifactFile> = {};
    for (const [name, f] of Object.entries(out.files)) {
      const { data, meta } = typeof f === 'string' || f instanceof Uint8Array ? { data: f, meta: undefined } : f;
      const blob = await this.putBlob(data);
      files[name] = meta ? { ...blob, meta } : blob;
    }
    const body = {
      format: 'layerflow.manifest/1' as const,
      key: out.key,
      stage: out.parts.stage,
      kind: out.kind,
      files,
      parts: out.parts,
      metrics: out.metrics ?? {},
      ...(out.series && Object.keys(out.series).length ? { series: out.series } : {}),
      createdAt: new Date().toISOString(),
    };
    const manifest: Manifest = { ...body, digest: sha256(canonicalJson(body)) };
    await writeFileAtomic(this.manifestPath(out.key), JSON.stringify(manifest, null, 1));
    return manifest;
  }

  /**
   * A cache hit needs the manifest to verify and every blob to exist with its size; blobs up to
   * FULL_VERIFY_BYTES are also re-hashed here. Larger ones (gradient shards) are hashed by every
   * reader instead (readBlob), so a hit never re-reads GBs and corrupt bytes are still never used.
   */
  async lookup(key: string): Promise<Lookup> {
    const path = this.manifestPath(key);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) return { status: 'missing' };
    let manifest: Manifest;
    try {
      manifest = JSON.parse(text) as Manifest;
    } catch {
      return { status: 'corrupt', reason: `manifest ${path} is not valid JSON` };
    }
    const { digest, ...body } = manifest;
    if (digest !== sha256(canonicalJson(body)) || manifest.key !== key)
      return { status: 'corrupt', reason: `manifest ${path} fails its checksum` };
    for (const [name, file] of Object.entries(manifest.files)) {
      const problem = await this.checkBlob(file, `${manifest.stage}/${name}`);
      if (problem) return { status: 'corrupt', reason: problem };
    }
    return { status: 'hit', manifest };
  }

  /** Why a blob cannot be used (missing, wrong size, or — when small — wrong hash), or undefined. */
  async checkBlob(file: ArtifactFile, what: string): Promise<string | undefined> {
    if (file.size > FULL_VERIFY_BYTES) {
      const st = await stat(this.blobPath(file.sha256)).catch(() => undefined);
      if (!st) return `${what}: blob ${this.blobPath(file.sha256)} does not exist`;
      return st.size === file.size ? undefined : `${what}: blob ${this.blobPath(file.sha256)} has ${st.size} bytes; expected ${file.size}`;
    }
    try {
      await this.readBlob(file, what);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  shardPath(key: string, index: number): string {
    return join(this.root, 'stages', `${key}.shards`, `${String(index).padStart(5, '0')}.json`);
  }

  /**
   * Commit one shard of a stage that is still running (DESIGN.md contract 4): the blob first, then
   * its small record, atomically. A retry of the stage finds committed shards with `committedShard`.
   */
  async commitShard(key: string, index: number, data: Uint8Array, meta?: Record<string, unknown>): Promise<ArtifactFile> {
    const blob = await this.putBlob(data);
    const file: ArtifactFile = meta ? { ...blob, meta } : blob;
    await writeFileAtomic(this.shardPath(key, index), JSON.stringify(file));
    return file;
  }

  /** A shard committed earlier whose blob still verifies, or undefined (then it is recomputed). */
  async committedShard(key: string, index: number): Promise<ArtifactFile | undefined> {
    const text = await readFile(this.shardPath(key, index), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    let file: ArtifactFile;
    try { file = JSON.parse(text) as ArtifactFile; } catch { return undefined; }
    if (typeof file?.sha256 !== 'string' || typeof file.size !== 'number') return undefined;
    return (await this.checkBlob(file, `shard ${index} of ${key.slice(0, 12)}`)) ? undefined : file;
  }

}

/** Blobs up to this size are re-hashed on every cache lookup; larger ones on every read. */
export const FULL_VERIFY_BYTES = 16 * 2 ** 20;

export function refOf(m: Manifest): ArtifactRef {
  return { key: m.key, stage: m.stage, kind: m.kind, files: m.files };
}
