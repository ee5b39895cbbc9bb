/**
 * Counting a rendered plot's data marks in its SVG text: Vega draws each data mark (role "mark",
 * not axes, legends or headers) as `<g class="mark-<type> role-mark ...">` holding one element per
 * item (a path for rects, symbols and lines). Per figure of a report page: `figureSvg`.
 */

/** Items per mark type (rect, symbol, line, ...) over every data mark of the SVG. */
export function svgMarkCounts(svg: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of svg.matchAll(/<g class="mark-([a-z]+) role-mark[^"]*"[^>]*>(.*?)<\/g>/gs)) {
    out[m[1]] = (out[m[1]] ?? 0) + (m[2].match(/<(path|rect|line|text)\b/g)?.length ?? 0);
  }
  return out;
}

/** The inline SVG of the report's figure `data-plot="id"`, or undefined. */
export function figureSvg(html: string, id: string): string | undefined {
  const m = html.match(new RegExp(`<figure data-plot="${id}"[^>]*>(.*?)</figure>`, 's'));
  return m?.[1];
}
