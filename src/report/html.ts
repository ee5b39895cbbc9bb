/**
 * The report page: one HTML document with its style inline, plots as inline SVG and results as
 * HTML tables — no script, no link, no URL, so it opens from disk, offline, years later.
 */
import type { ResultTable } from '../cli/results.ts';

export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** One plot: its id (the figure's `data-plot`), a caption and the inline SVG. */
export interface Figure {
  id: string;
  title: string;
  caption: string;
  svg: string;
}

/** A section of the page: a heading, an optional line of text, figures and tables. */
export interface Section {
  id: string;
  title: string;
  intro?: string;
  figures: Figure[];
  tables: ResultTable[];
}

export function figureHtml(f: Figure): string {
  return `<figure data-plot="${escapeHtml(f.id)}" id="plot-${escapeHtml(f.id)}">
<figcaption><strong>${escapeHtml(f.title)}</strong> ${escapeHtml(f.caption)}</figcaption>
<div class="plot">${f.svg}</div>
</figure>`;
}

/**
 * A results table under its title; columns empty in the header and every row (the text layout's
 * spacers) are left out, and the label columns (the text's first two) are left-aligned.
 */
export function tableHtml(t: ResultTable): string {
  const keep = t.header.map((h, i) => h !== '' || t.rows.some((r) => r[i] !== ''));
  const cells = (r: string[], tag: 'th' | 'td') =>
    r.map((c, i) => (keep[i] ? `<${tag}${i < 2 ? ' class="label"' : ''}>${escapeHtml(c)}</${tag}>` : '')).join('');
  return `<div class="result" data-table="${escapeHtml(t.name)}">
<h3>${escapeHtml((t.title ?? t.name).trim())}</h3>
<table>
<thead><tr>${cells(t.header, 'th')}</tr></thead>
<tbody>
${t.rows.map((r) => `<tr>${cells(r, 'td')}</tr>`).join('\n')}
</tbody>
</table>${t.note ? `\n<p class="note">${escapeHtml(t.note.trim())}</p>` : ''}
</div>`;
}

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1400px; padding: 0 1.5rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.2rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: .25rem; }
.meta { color: #555; font-size: .9rem; }
.meta code { font-size: .85rem; }
nav { margin: 1rem 0; font-size: .9rem; }
nav a { margin-right: 1rem; }
figure { margin: 1.5rem 0; }
figcaption { font-size: .9rem; margin-bottom: .5rem; color: #333; max-width: 70rem; }
.plot { overflow-x: auto; }
h3 { font-size: .95rem; font-weight: 600; margin: 1.75rem 0 .5rem; max-width: 70rem; }
table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { border-bottom: 2px solid #bbb; }
th.label, td.label { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
.note { font-size: .85rem; color: #555; margin-top: .4rem; }
.empty { color: #777; font-style: italic; }
`;

/** The whole page. */
export function pageHtml(p: { title: string; meta: string[]; sections: Section[]; empty?: string }): string {
  const nav = p.sections.length > 1 ? `<nav>${p.sections.map((s) => `<a href="#${escapeHtml(s.id)}">${escapeHtml(s.title)}</a>`).join('')}</nav>` : '';
  const body = p.sections.map((s) => `<section id="${escapeHtml(s.id)}">
<h2>${escapeHtml(s.title)}</h2>
${s.intro ? `<p>${escapeHtml(s.intro)}</p>\n` : ''}${s.figures.map(figureHtml).join('\n')}
${s.tables.map(tableHtml).join('\n')}
</section>`);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(p.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(p.title)}</h1>
${p.meta.map((m) => `<p class="meta">${escapeHtml(m)}</p>`).join('\n')}
${nav}
${p.empty ? `<p class="empty">${escapeHtml(p.empty)}</p>\n` : ''}${body.join('\n')}
</body>
</html>
`;
}
