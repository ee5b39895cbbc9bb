import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { cpuCaches, lastLevelCacheBytes, parseCacheSize } from '../../src/runtime/index.ts';

test('parseCacheSize reads sysfs sizes', (t) => {
  t.is(parseCacheSize('32K'), 32768);
  t.is(parseCacheSize('8192K\n'), 8 << 20);
  t.is(parseCacheSize('32M'), 32 << 20);
  t.is(parseCacheSize('1G'), 1 << 30);
  t.is(parseCacheSize('4096'), 4096);
  t.is(parseCacheSize('0K'), undefined);
  t.is(parseCacheSize('large'), undefined);
});

test('cpuCaches / lastLevelCacheBytes from a sysfs-like tree: instruction caches and broken entries are skipped', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'layerflow-cache-'));
  try {
    const entry = (name: string, files: Record<string, string>) => {
      mkdirSync(join(root, name));
      for (const [f, v] of Object.entries(files)) writeFileSync(join(root, name, f), `${v}\n`);
    };
    entry('index0', { level: '1', type: 'Data', size: '32K' });
    entry('index1', { level: '1', type: 'Instruction', size: '64K' });
    entry('index3', { level: '3', type: 'Unified', size: '8192K' });
    entry('index2', { level: '2', type: 'Unified', size: '512K' });
    entry('index4', { level: '4' }); // no type / size
    t.deepEqual(cpuCaches(root), [
      { level: 1, type: 'Data', bytes: 32768 },
      { level: 2, type: 'Unified', bytes: 512 << 10 },
      { level: 3, type: 'Unified', bytes: 8 << 20 },
    ]);
    t.is(lastLevelCacheBytes(root), 8 << 20);
    t.deepEqual(cpuCaches(join(root, 'missing')), []);
    t.is(lastLevelCacheBytes(join(root, 'missing')), undefined);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
