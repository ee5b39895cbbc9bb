import { ConfigError } from '../errors.ts';
import type { FieldPath, Position } from './yaml-source.ts';

/** One problem in a sweep file, located precisely. */
export interface SweepIssue {
  file: string;
  /** 1-based line in the file; 0 (with col 0) only when the file could not be read at all. */
  line: number;
  /** 1-based column (characters from the line's start). */
  col: number;
  /** Field path, e.g. `axes.model[1]`. */
  field: string;
  message: string;
}

export function formatFieldPath(path: FieldPath): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : String(seg);
  return out || '(root)';
}

export function formatIssue(i: SweepIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.field}: ${i.message}`;
}

/** A sweep file is invalid: every issue found, each with file:line:column, field and what was expected. */
export class SweepConfigError extends ConfigError {
  constructor(readonly issues: SweepIssue[]) {
    super(
      issues.length === 1
        ? `invalid sweep: ${formatIssue(issues[0])}`
        : `invalid sweep (${issues.length} problems):\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`,
    );
  }
}

export function issueAt(file: string, pos: Position, path: FieldPath, message: string): SweepIssue {
  return { file, line: pos.line, col: pos.col, field: formatFieldPath(path), message };
}
