/**
 * Exact-duplicate removal for classification examples. An example whose text is identical to
 * an earlier one's is removed and the first occurrence kept (file order, so the result does not
 * depend on any seed). With `normalize` the comparison is on whitespace-normalised text (runs of
 * whitespace → one space, ends trimmed) or on a given key function; the kept examples keep
 * their original text and ids (ids are not renumbered).
 *
 * Duplicates that disagree with the kept example's label are removed as well and counted in
 * `conflicting` (a subset of `removed`): such pairs are label noise in the source data, which
 * would confound NDR's injected noise (SCIENCE.md §4).
 */
import type { ClassificationExample } from './types.ts';

export interface DuplicateGroup {
  /** Id of the kept (first) example. */
  keptId: number;
  /** Ids of the later examples with the same text, in order. */
  removedIds: number[];
  /** How many of `removedIds` have a label different from the kept example's. */
  conflicting: number;
}

export interface DedupeResult {
  /** The first example of every distinct text, in the original order. */
  kept: ClassificationExample[];
  /** Examples removed (kept.length + removed = input length). */
  removed: number;
  /** Removed examples whose label differs from the kept one's (counted in `removed` too). */
  conflicting: number;
  /** One group per text that occurs more than once, ordered by the kept example's position. */
  groups: DuplicateGroup[];
}

/** Runs of whitespace collapsed to one space, ends trimmed. */
export function normalizeWhitespace(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * Remove examples whose text repeats an earlier example's. `normalize`: false (default) compares
 * texts exactly; true compares them after normalizeWhitespace; a function gives the comparison key.
 */
export function dedupeExamples(examples: readonly ClassificationExample[], normalize: boolean | ((text: string) => string) = false): DedupeResult {
  const key = normalize === true ? normalizeWhitespace : normalize === false ? (s: string) => s : normalize;
  const first = new Map<string, { example: ClassificationExample; at: number; group?: DuplicateGroup }>();
  const kept: ClassificationExample[] = [];
  const groups: Array<{ at: number; group: DuplicateGroup }> = [];
  let removed = 0;
  let conflicting = 0;
  for (const e of examples) {
    const k = key(e.text);
    const seen = first.get(k);
    if (!seen) {
      first.set(k, { example: e, at: kept.length });
      kept.push(e);
      continue;
    }
    if (!seen.group) {
      seen.group = { keptId: seen.example.id, removedIds: [], conflicting: 0 };
      groups.push({ at: seen.at, group: seen.group });
    }
    seen.group.removedIds.push(e.id);
    removed++;
    if (e.label !== seen.example.label) {
      seen.group.conflicting++;
      conflicting++;
    }
  }
  // Groups are created when their first duplicate appears; order them by the kept example instead.
  groups.sort((a, b) => a.at - b.at);
  return { kept, removed, conflicting, groups: groups.map((g) => g.group) };
}
