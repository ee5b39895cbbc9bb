/**
 * The host CPU's cache sizes, read from Linux sysfs (`/sys/devices/system/cpu/cpu0/cache/index*`).
 * Used to size the row blocks that memory-bound graphs walk so that a block and its temporaries stay
 * in cache (src/influence/full-matrix.ts). Unknown (undefined) on other systems or restricted sandboxes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CacheLevel {
  level: number;
  type: 'Data' | 'Instruction' | 'Unified';
  bytes: number;
}

const SYSFS_CACHE = '/sys/devices/system/cpu/cpu0/cache';

/** Parse a sysfs cache size: `32K`, `8192K`, `32M`, or plain bytes. */
export function parseCacheSize(s: string): number | undefined {
  const m = /^\s*(\d+)\s*([KMG]?)\s*$/i.exec(s);
  if (!m) return undefined;
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  const bytes = Number(m[1]) * scale;
  return bytes > 0 ? bytes : undefined;
}

/** Cache levels of cpu0 (data and unified caches; instruction caches are left out). Empty if unreadable. */
export function cpuCaches(root = SYSFS_CACHE): CacheLevel[] {
  let entries: string[];
  try {
    entries = readdirSync(root).filter((e) => /^index\d+$/.test(e));
  } catch {
    return [];
  }
  const out: CacheLevel[] = [];
  for (const e of entries) {
    try {
      const read = (f: string) => readFileSync(join(root, e, f), 'utf8').trim();
      const level = Number(read('level'));
      const type = read('type');
      const bytes = parseCacheSize(read('size'));
      if (!Number.isInteger(level) || bytes === undefined || (type !== 'Data' && type !== 'Unified')) continue;
      out.push({ level, type, bytes });
    } catch {
      // an index without level/type/size (seen in some containers): skip it
    }
  }
  return out.sort((a, b) => a.level - b.level);
}

/** Size of the last-level cache in bytes, or undefined when sysfs does not say. */
export function lastLevelCacheBytes(root = SYSFS_CACHE): number | undefined {
  const c = cpuCaches(root);
  return c.length ? c[c.length - 1].bytes : undefined;
}
