/**
 * Optimised-model cache for CPU sessions: ORT's graph optimisation of a large gradient graph costs
 * seconds at every stage start (135M per-example gradients: ~3.7 s of a 3.9 s session creation),
 * and its result depends only on the model bytes, the ORT version and the CPU. The first session of
 * a model saves ORT's optimised model under `<home>/cache/ort/`; later ones load it with
 * optimisations off (~0.5 s). The key holds the model's sha256, ORT's version and the CPU's model
 * and flags (level 'all' makes hardware-specific layouts), so a cache shared by hosts of a cluster
 * never hands one CPU's layouts to another. Files are renamed into place once complete; a file ORT
 * cannot load is removed and the session created from the original model.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

let cacheDir: string | undefined;
/** Models smaller than this create their session in well under a second: not cached. */
export const MIN_CACHED_BYTES = 256 * 1024;
let minBytes = MIN_CACHED_BYTES;
/** Models with large baked-in weights are not copied into the cache. */
export const MAX_CACHED_BYTES = 64 * 2 ** 20;

/** Where this process caches optimised models (undefined: no cache). Workers set `<home>/cache/ort`. */
export function setSessionCacheDir(dir: string | undefined, opts: { minBytes?: number } = {}): void {
  cacheDir = dir;
  minBytes = opts.minBytes ?? MIN_CACHED_BYTES;
}

let hostKey: string | undefined;
function cpuKey(): string {
  if (hostKey === undefined) {
    let flags = '';
    try { flags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:\s*(.+)$/m)?.[1] ?? ''; } catch { /* not Linux */ }
    hostKey = `${cpus()[0]?.model ?? '?'}|${process.arch}|${flags}`;
  }
  return hostKey;
}

/** The cache file of `model` for sessions created with `options` (the parts that change the optimised graph). */
export function cachedModelPath(dir: string, model: Uint8Array, options: { level: string; extra?: unknown }): string {
  const h = createHash('sha256').update(model).update(`\0${ort.env.versions.common}\0${options.level}\0${JSON.stringify(options.extra ?? {})}\0${cpuKey()}`);
  return join(dir, `${h.digest('hex').slice(0, 40)}.onnx`);
}

/**
 * Creates a CPU session through the cache: loads the saved optimised model if there is one, else
 * creates the session from `model` while ORT writes its optimised model, then renames that into place.
 * Returns null when the model is not cached (size) or no cache is set; the caller creates normally.
 */
export async function createCachedCpuSession(model: Uint8Array, so: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession | null> {
  const dir = cacheDir;
  if (!dir || model.length < minBytes || model.length > MAX_CACHED_BYTES) return null;
  const level = so.graphOptimizationLevel ?? 'all';
  if (level === 'disabled') return null;
  const path = cachedModelPath(dir, model, { level, extra: so.extra });
  const hit = await stat(path).then((s) => s.isFile() && s.size > 0, () => false);
  if (hit) {
    try {
      return await ort.InferenceSession.create(path, { ...so, graphOptimizationLevel: 'disabled' });
    } catch {
      await rm(path, { force: true }); // unreadable (another ORT, a damaged disk): rebuilt below
    }
  }
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${process.pid}.${randomBytes(6).toString('hex')}.onnx.tmp`);
  // ORT warns that a level-'all' model is hardware-specific; the key already says which CPU made it.
  const s = await ort.InferenceSession.create(model, { ...so, optimizedModelFilePath: tmp, logSeverityLevel: 3 });
  try {
    if ((await stat(tmp)).size > 0) await rename(tmp, path);
  } catch {
    /* ORT did not write it (disk full, read-only home): the session is fine without the cache */
  } finally {
    await rm(tmp, { force: true });
  }
  return s;
}
