/**
 * Task datasets from JSONL, one example per line (blank lines skipped):
 *   multiple choice: {"prompt": str, "choices": [str, …], "answer": int index | str choice}
 *   classification:  {"text": str, "label": int ≥ 0 | str}
 * All rows must be of the same kind (decided by the first row, or fixed by `expect`). String
 * labels are mapped to class ids in sorted order (`labelNames`). Classification rows may name
 * their fields differently (`textField`, `labelField`; e.g. {"sentence": …, "y": …}).
 * Bad rows throw DataError("file:line: …") naming the field.
 */
import { readFileSync } from 'node:fs';
import { DataError, MissingArtifactError } from '../errors.ts';
import type { ChoiceExample, ClassificationExample, TaskDataset } from './types.ts';

export interface TaskJsonlOptions {
  /** Field holding a classification row's text (default "text"). */
  textField?: string;
  /** Field holding a classification row's label (default "label"). */
  labelField?: string;
  /** The kind every row must be; a row of the other kind throws DataError saying what was expected. */
  expect?: TaskDataset['kind'];
}

export function parseTaskJsonl(text: string, file: string, name = file, { textField = 'text', labelField = 'label', expect }: TaskJsonlOptions = {}): TaskDataset {
  const clsFields = `${textField}/${labelField}`;
  const choice: ChoiceExample[] = [];
  const cls: Array<{ id: number; text: string; label: number | string; line: number }> = [];
  let kind: 'choice' | 'classification' | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    const where = `${file}:${line}`;
    let row: unknown;
    try { row = JSON.parse(raw); } catch (e) { throw new DataError(`${where}: not valid JSON (${(e as Error).message})`); }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new DataError(`${where}: expected a JSON object`);
    const r = row as Record<string, unknown>;
    const rowKind = expect === 'classification' && textField in r ? 'classification' : 'choices' in r ? 'choice' : textField in r ? 'classification' : undefined;
    const got = Object.keys(r).join(', ') || 'no fields';
    if (expect === 'classification' && rowKind !== 'classification') {
      throw new DataError(`${where}: ${rowKind === 'choice' ? 'a multiple-choice row (prompt/choices/answer)' : `fields ${got}`}; expected a classification row with fields ${clsFields}`);
    }
    if (expect === 'choice' && rowKind !== 'choice') {
      throw new DataError(`${where}: ${rowKind === 'classification' ? `a classification row (${clsFields})` : `fields ${got}`}; expected a multiple-choice row with fields prompt/choices/answer`);
    }
    if (!rowKind) throw new DataError(`${where}: expected fields prompt/choices/answer or ${clsFields}; got ${got}`);
    kind ??= rowKind;
    if (rowKind !== kind) throw new DataError(`${where}: a ${rowKind} row in a ${kind} dataset; expected all rows of one kind`);
    const id = kind === 'choice' ? choice.length : cls.length;
    if (kind === 'choice') {
      if (typeof r.prompt !== 'string') throw new DataError(`${where}: field "prompt" must be a string`);
      if (!Array.isArray(r.choices) || r.choices.length < 2 || r.choices.some((c) => typeof c !== 'string')) throw new DataError(`${where}: field "choices" must be an array of at least 2 strings`);
      const choices = r.choices as string[];
      const answer = typeof r.answer === 'string' ? choices.indexOf(r.answer) : r.answer;
      if (typeof answer !== 'number' || !Number.isInteger(answer) || answer < 0 || answer >= choices.length) {
        throw new DataError(`${where}: field "answer" is ${JSON.stringify(r.answer)}; expected an index in [0, ${choices.length}) or one of the choices`);
      }
      choice.push({ id, prompt: r.prompt, choices, answer });
    } else {
      const rowText = r[textField];
      const label = r[labelField];
      if (typeof rowText !== 'string') throw new DataError(`${where}: field "${textField}" must be a string`);
      const ok = (typeof label === 'number' && Number.isInteger(label) && label >= 0) || (typeof label === 'string' && label !== '');
      if (!ok) throw new DataError(`${where}: field "${labelField}" is ${JSON.stringify(label)}; expected an integer ≥ 0 or a non-empty string`);
      if (cls.length > 0 && typeof cls[0].label !== typeof label) throw new DataError(`${where}: field "${labelField}" has type ${typeof label}, unlike line ${cls[0].line} (${typeof cls[0].label}); expected one label type`);
      cls.push({ id, text: rowText, label: label as number | string, line });
    }
  });
  if (!kind) throw new DataError(`${file}: no examples; expected at least one JSONL row`);
  if (kind === 'choice') return { name, kind, examples: choice };
  if (typeof cls[0].label === 'string') {
    const labelNames = [...new Set(cls.map((c) => c.label as string))].sort();
    const examples: ClassificationExample[] = cls.map((c) => ({ id: c.id, text: c.text, label: labelNames.indexOf(c.label as string) }));
    return { name, kind, examples, numClasses: labelNames.length, labelNames };
  }
  const examples = cls.map((c) => ({ id: c.id, text: c.text, label: c.label as number }));
  return { name, kind, examples, numClasses: Math.max(...examples.map((e) => e.label)) + 1 };
}

/** Read and parse a task JSONL file; an unreadable file throws MissingArtifactError naming the path. */
export function loadTaskJsonl(path: string, name?: string, options?: TaskJsonlOptions): TaskDataset {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) { throw new MissingArtifactError(`task dataset ${path}: cannot read (${(e as Error).message})`, { cause: e }); }
  return parseTaskJsonl(text, path, name, options);
}
