import { canonicalJson, sha256 } from './hash.ts';

/** Everything a stage's cache key is made of (DESIGN.md contract 2). Kept so misses can be explained. */
export interface CacheKeyParts {
  stage: string;
  version: number;
  /** The resolved config slice the stage reads. */
  slice: Record<string, unknown>;
  /** Upstream stage name → that stage's cache key. */
  upstream: Record<string, string>;
}

/** key = sha256(stage, implementation version, resolved config slice, upstream keys). */
export function stageCacheKey(parts: CacheKeyParts): string {
  return sha256(canonicalJson({ v: 1, ...parts }));
}

export interface KeyDifference {
  part: 'stage' | 'version' | 'slice' | 'upstream';
  path: string;
  before: unknown;
  after: unknown;
}

/** Which parts of two cache keys differ, field by field (for `layerflow explain`). */
export function diffCacheKeyParts(before: CacheKeyParts, after: CacheKeyParts): KeyDifference[] {
  const out: KeyDifference[] = [];
  if (before.stage !== after.stage) out.push({ part: 'stage', path: 'stage', before: before.stage, after: after.stage });
  if (before.version !== after.version)
    out.push({ part: 'version', path: 'version', before: before.version, after: after.version });
  diffValues('slice', before.slice, after.slice, '', out);
  diffValues('upstream', before.upstream, after.upstream, '', out);
  return out;
}

function diffValues(part: KeyDifference['part'], a: unknown, b: unknown, path: string, out: KeyDifference[]): void {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of [...keys].sort()) diffValues(part, a[k], b[k], path ? `${path}.${k}` : k, out);
    return;
  }
  if (canonicalJson(a) !== canonicalJson(b)) out.push({ part, path: path || part, before: a, after: b });
}
