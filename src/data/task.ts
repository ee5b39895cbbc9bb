/**
 * Classification tasks named by a pipeline's task entry (SCIENCE.md §4: binary classification
 * tasks). An entry says where the labelled texts come from:
 *   { source: 'spam-assassin', groups?: [...], stripHeaders?: bool }  the installed corpus (spam-assassin.ts)
 *   { source: 'jsonl', path, textField?: 'text', labelField?: 'label' } a JSONL file (jsonl.ts); a
 *                                                                       relative path is resolved against baseDir
 * `TaskEntry` is the zod schema (strict: an unknown or misspelt field is an error). A bad entry
 * throws ConfigError naming the field; a missing file MissingArtifactError naming the path; a file
 * of multiple-choice rows, or a bad row, DataError("file:line: …").
 */
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { loadTaskJsonl } from './jsonl.ts';
import { loadSpamAssassin, SPAM_ASSASSIN_GROUPS } from './spam-assassin.ts';
import type { ClassificationTask } from './types.ts';

const FIELD = z.string().min(1, 'expected a non-empty field name');

export const TaskEntry = z.discriminatedUnion('source', [
  z.strictObject({
    source: z.literal('spam-assassin'),
    groups: z.array(z.enum(SPAM_ASSASSIN_GROUPS)).min(1, 'expected at least one group').optional(),
    stripHeaders: z.boolean().optional(),
  }),
  z.strictObject({
    source: z.literal('jsonl'),
    path: z.string().min(1, 'expected a file path'),
    textField: FIELD.optional(),
    labelField: FIELD.optional(),
  }),
]);
export type TaskEntry = z.infer<typeof TaskEntry>;

/** Validate a task entry; throws ConfigError listing every problem as `<where>.<field>: message`. */
export function parseTaskEntry(raw: unknown, where = 'task'): TaskEntry {
  const r = TaskEntry.safeParse(raw);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `${[where, ...i.path.map(String)].join('.')}: ${i.message}`);
  throw new ConfigError(`invalid task entry: ${lines.join('; ')}`);
}

/**
 * The same fields as one flat object schema, for a pipeline's `task` entry schema (PipelineDef.task
 * must be a z.ZodObject; the sweep adds `id`). Which fields go with which source is checked when
 * loadClassificationTask validates the entry against `TaskEntry`.
 */
export const TaskEntryFields = z.object({
  /** spam-assassin / jsonl: labelled texts; bigbench / choice-jsonl: multiple-choice documents (src/eval/bigbench.ts). */
  source: z.enum(['spam-assassin', 'jsonl', 'bigbench', 'choice-jsonl']),
  /** BIG-bench task name (e.g. winowhy, logical_deduction/three_objects), fetched by infra/fetch-data.sh. */
  name: z.string().min(1).optional(),
  groups: z.array(z.enum(SPAM_ASSASSIN_GROUPS)).min(1, 'expected at least one group').optional(),
  stripHeaders: z.boolean().optional(),
  path: z.string().min(1, 'expected a file path').optional(),
  textField: FIELD.optional(),
  labelField: FIELD.optional(),
});

/**
 * Load the classification task an entry names; the entry is validated against `TaskEntry` (a
 * sweep's task entry may carry its `id` too, which is ignored here). `baseDir` resolves a relative
 * JSONL path (default: the working directory).
 */
export function loadClassificationTask(entry: TaskEntry | (Record<string, unknown> & { id?: string }), baseDir = process.cwd()): ClassificationTask {
  const { id, ...fields } = entry as Record<string, unknown>;
  const e = parseTaskEntry(fields, typeof id === 'string' ? `task ${JSON.stringify(id)}` : 'task');
  if (e.source === 'spam-assassin') {
    const ds = loadSpamAssassin({ groups: e.groups, stripHeaders: e.stripHeaders });
    if (ds.kind !== 'classification') throw new Error('loadSpamAssassin returned a non-classification dataset');
    return ds;
  }
  const path = isAbsolute(e.path) ? e.path : resolve(baseDir, e.path);
  const ds = loadTaskJsonl(path, e.path, { textField: e.textField, labelField: e.labelField, expect: 'classification' });
  if (ds.kind !== 'classification') throw new Error(`loadTaskJsonl(expect: classification) returned a ${ds.kind} dataset`);
  return ds;
}
