/**
 * Small shared helpers of the results commands (`results`, `compare`, `report`): mean and
 * sample standard deviation over seeds, their compact `mean±std` form, and a plain-text table.
 */

/** Arithmetic mean; NaN for an empty list. */
export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Sample standard deviation (n − 1); 0 for fewer than two values. */
export const std = (xs: number[]): number => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));

/** `mean±std` with three decimals (`mean` alone for one value, `—` for none). */
export const fmt = (xs: number[]): string => (xs.length ? `${mean(xs).toFixed(3)}${xs.length > 1 ? `±${std(xs).toFixed(3)}` : ''}` : '—');

/** Decimals that keep about four significant digits for values of this size (3 below 10). */
export function decimalsFor(x: number): number {
  const a = Math.abs(x);
  return a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : 3;
}

export interface TableOptions {
  /** How many leading columns are left-aligned (labels); the rest are right-aligned. Default 2. */
  left?: number;
  /** Column-group labels printed above the header, each spanning `span` columns (in order, covering every column). */
  groups?: Array<{ label: string; span: number }>;
}

/**
 * A plain-text table: a header (one line, or several when given as rows of labels), a rule, the
 * rows. Columns are as wide as their widest entry; with `groups`, a line above the header labels
 * runs of columns (a run is widened where its label is longer than its columns).
 */
export function table(header: string[] | string[][], rows: string[][], opts: TableOptions = {}): string {
  const heads = (header.length && Array.isArray(header[0]) ? header : [header]) as string[][];
  const left = opts.left ?? 2;
  const ncol = Math.max(...heads.map((h) => h.length), ...rows.map((r) => r.length));
  const w = Array.from({ length: ncol }, (_, i) => Math.max(0, ...heads.map((h) => (h[i] ?? '').length), ...rows.map((r) => (r[i] ?? '').length)));
  const spans: Array<{ label: string; from: number; to: number }> = [];
  if (opts.groups) {
    let at = 0;
    for (const g of opts.groups) {
      spans.push({ label: g.label, from: at, to: at + g.span - 1 });
      at += g.span;
    }
    for (const s of spans) {
      const width = w.slice(s.from, s.to + 1).reduce((a, b) => a + b, 0) + 2 * (s.to - s.from);
      if (s.label.length > width) w[s.to] += s.label.length - width;
    }
  }
  const line = (r: string[]) => '  ' + w.map((x, i) => (i < left ? (r[i] ?? '').padEnd(x) : (r[i] ?? '').padStart(x))).join('  ');
  const out: string[] = [];
  // A group label centred in a rule as wide as its columns: `──── label ────`.
  const rule = (label: string, width: number) => {
    const pad = width - label.length - 2;
    return pad < 2 ? label.padStart(width) : `${'─'.repeat(Math.floor(pad / 2))} ${label} ${'─'.repeat(Math.ceil(pad / 2))}`;
  };
  if (spans.length) {
    let s = '  ';
    for (const g of spans) {
      const width = w.slice(g.from, g.to + 1).reduce((a, b) => a + b, 0) + 2 * (g.to - g.from);
      s += (g.from ? '  ' : '') + (g.from >= left && g.label ? rule(g.label, width) : g.label.padEnd(width));
    }
    out.push(s.trimEnd());
  }
  out.push(...heads.map((h) => line(h).trimEnd()), '  ' + w.map((x) => '─'.repeat(x)).join('  '), ...rows.map((r) => line(r).trimEnd()));
  return out.join('\n');
}
