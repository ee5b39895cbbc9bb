/**
 * Vega-Lite spec → SVG in Node: vega-lite compiles the spec to Vega, vega renders it headless
 * (`renderer: 'none'`, no DOM, no canvas, no network: data are inline). `sceneMarks` walks the
 * same scenegraph the SVG is drawn from, so tests can count marks and read their data.
 */
import { compile, type TopLevelSpec } from 'vega-lite';
import { parse, View } from 'vega';

function view(spec: TopLevelSpec): View {
  return new View(parse(compile(spec).spec), { renderer: 'none' });
}

/**
 * The plot as a standalone SVG string, ready to inline into HTML: the namespace attributes are
 * dropped (an HTML parser puts inline <svg> in the SVG namespace by itself), so the report
 * contains no URL at all.
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const v = view(spec);
  try {
    const svg = await v.toSVG();
    return svg.replace(/^<svg([^>]*)>/, (_, attrs: string) => `<svg${attrs.replace(/\s+xmlns(:xlink)?="[^"]*"/g, '')} role="img">`);
  } finally {
    v.finalize();
  }
}

/** An inline SVG (renderSvg) as a standalone .svg file: the SVG namespace back on its root. */
export const standaloneSvg = (svg: string) => svg.replace(/^<svg/, '<svg xmlns="http://www.w3.org/2000/svg"');

/** One drawn mark (role "mark": data marks, not axes or legends) and its items' data and fills. */
export interface DrawnMark {
  marktype: string;
  name: string;
  data: Array<Record<string, unknown>>;
  /** Each item's fill colour as drawn (CSS colour string), in the order of `data`. */
  fills: Array<string | undefined>;
}

interface SceneNode {
  marktype: string;
  role: string;
  name?: string;
  items: Array<{ datum?: object; fill?: string; items?: SceneNode[] }>;
}

/** Every data mark of the rendered plot (one per facet panel and layer), with its items' data. */
export async function sceneMarks(spec: TopLevelSpec): Promise<DrawnMark[]> {
  const v = view(spec);
  try {
    await v.runAsync();
    const out: DrawnMark[] = [];
    const walk = (m: SceneNode) => {
      if (m.marktype === 'group') for (const it of m.items) for (const child of it.items ?? []) walk(child);
      else if (m.role === 'mark') out.push({ marktype: m.marktype, name: m.name ?? '', data: m.items.map((i) => (i.datum ?? {}) as Record<string, unknown>), fills: m.items.map((i) => i.fill) });
    };
    // The typings call it a Scene; at run time the scenegraph holds its root group mark in `root`.
    walk((v.scenegraph() as unknown as { root: SceneNode }).root);
    return out;
  } finally {
    v.finalize();
  }
}
