import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * The file-system calls an atomic write makes. The default is node:fs/promises; a test passes its
 * own (e.g. one whose writeFile fails with ENOSPC half-way) to play a full disk.
 */
export interface AtomicIO {
  mkdir(dir: string): Promise<void>;
  /** Create `path` (it must not exist), write all of `data`, fsync, close. */
  writeFile(path: string, data: string | Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string): Promise<void>;
}

export const nodeIO: AtomicIO = {
  mkdir: async (dir) => { await mkdir(dir, { recursive: true }); },
  writeFile: async (path, data) => {
    const fh = await open(path, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  rename: (from, to) => rename(from, to),
  rm: (path) => rm(path, { force: true }),
};

/** Temp files of atomic writes: `.<target name>.<pid>.<random>.tmp`, next to the target. */
export const isTempName = (name: string): boolean => name.startsWith('.') && name.endsWith('.tmp');

/**
 * Write a file so that readers see either the old content or the whole new content, never a
 * partial one (DESIGN.md contract 3): write a temp file in the same directory, fsync it,
 * rename over the target, fsync the directory. A failed write (a full disk: ENOSPC half-way)
 * leaves the old file untouched, removes its temp file and rethrows the original error.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, io: AtomicIO = nodeIO): Promise<void> {
  const dir = dirname(path);
  await io.mkdir(dir);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await io.writeFile(tmp, data);
    await io.rename(tmp, path);
  } catch (err) {
    // Cleanup must not hide the write's own error (a full disk, say).
    await io.rm(tmp).catch(() => undefined);
    throw err;
  }
  // Make the rename itself durable; a platform that cannot fsync a directory loses nothing else.
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch { /* best effort */ }
}
