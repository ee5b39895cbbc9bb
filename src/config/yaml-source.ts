import { parseDocument, isMap, isSeq, isScalar, isPair, isAlias, type Document, type Node, type Alias } from 'yaml';

export type FieldPath = Array<string | number>;

export interface Position {
  line: number;
  col: number;
}

/** A scalar of the document (a value or a map key) with where it is. */
export interface ScalarAt {
  /** Field path of the value (for a key: the path of the value the key names). */
  path: FieldPath;
  /** The map key the value belongs to (inherited by list items: `token: [x]`); for a key, the key itself. */
  key?: string;
  value: unknown;
  isKey: boolean;
  pos: Position;
  /** Offsets [start, end) of the scalar in the text. */
  range: [number, number];
}

/** Most aliases a document may expand (guards against "billion laughs" alias bombs). */
const MAX_ALIAS_COUNT = 100;

/** A parsed YAML file that remembers where every node came from. */
export class YamlSource {
  readonly doc: Document;
  /** Offset of the first character of each line ("\n" ends a line). Counted here, not by yaml's
   *  LineCounter: the lexer does not report every newline of a text with syntax errors. */
  private readonly lineStarts: number[] = [0];

  constructor(readonly file: string, readonly text: string) {
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) this.lineStarts.push(i + 1);
    // logLevel 'error': no process warnings (e.g. on collection keys) printed from a library call.
    this.doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, logLevel: 'error' });
  }

  /** YAML syntax errors, with positions. */
  syntaxErrors(): Array<{ pos: Position; message: string }> {
    return this.doc.errors.map((e) => ({ pos: this.pos(e.pos[0]), message: shortMessage(e.message) }));
  }

  /** 1-based line and column of an offset (clamped to the text). */
  pos(offset: number): Position {
    const o = Math.max(0, Math.min(Number.isFinite(offset) ? offset : 0, this.text.length));
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid] <= o) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: o - this.lineStarts[lo] + 1 };
  }

  /**
   * The document as plain JS. Alias problems (an alias with no anchor before it, an alias inside
   * the node it names, too many alias expansions) are returned located rather than thrown.
   */
  toJS(): { ok: true; value: unknown } | { ok: false; pos: Position; message: string } {
    const aliases: Array<{ alias: Alias; ancestors: unknown[] }> = [];
    const walk = (n: unknown, ancestors: unknown[]): void => {
      if (isAlias(n)) aliases.push({ alias: n, ancestors });
      else if (isMap(n) || isSeq(n)) for (const it of n.items) walk(it, [...ancestors, n]);
      else if (isPair(n)) {
        walk(n.key, ancestors);
        walk(n.value, ancestors);
      }
    };
    walk(this.doc.contents, []);
    for (const { alias, ancestors } of aliases) {
      const target = alias.resolve(this.doc);
      const at = this.start(alias) ?? { line: 1, col: 1 };
      if (!target) return { ok: false, pos: at, message: `unknown alias *${alias.source}; expected an anchor &${alias.source} defined before it` };
      if (ancestors.includes(target)) return { ok: false, pos: at, message: `alias *${alias.source} refers to a node that contains it` };
    }
    try {
      return { ok: true, value: this.doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) };
    } catch (err) {
      const at = (aliases.length ? this.start(aliases[0].alias) : this.start(this.doc.contents)) ?? { line: 1, col: 1 };
      const msg = (err as Error).message.split('\n')[0];
      return { ok: false, pos: at, message: /alias count/i.test(msg) ? `too many alias expansions (at most ${MAX_ALIAS_COUNT})` : msg };
    }
  }

  /** Every scalar of the document, keys included, depth first in document order (aliases are not followed). */
  scalars(): ScalarAt[] {
    const out: ScalarAt[] = [];
    const visit = (n: unknown, path: FieldPath, key: string | undefined): void => {
      if (isScalar(n)) {
        const r = n.range;
        if (r) out.push({ path, key, value: n.value, isKey: false, pos: this.pos(r[0]), range: [r[0], r[1]] });
      } else if (isMap(n)) {
        for (const it of n.items) {
          const name = isScalar(it.key) ? String(it.key.value) : '?';
          const r = isScalar(it.key) ? it.key.range : undefined;
          if (r) out.push({ path: [...path, name], key: name, value: (it.key as { value: unknown }).value, isKey: true, pos: this.pos(r[0]), range: [r[0], r[1]] });
          else visit(it.key, [...path, name], undefined);
          visit(it.value, [...path, name], name);
        }
      } else if (isSeq(n)) {
        n.items.forEach((it, i) => visit(it, [...path, i], key));
      } else if (isPair(n)) {
        const name = isScalar(n.key) ? String(n.key.value) : '?';
        visit(n.key, path, undefined);
        visit(n.value, [...path, name], name);
      }
    };
    visit(this.doc.contents, [], undefined);
    return out;
  }

  /** Position of the value at `path`; `keyOf` gives the position of the map key instead. */
  locate(path: FieldPath, keyOf = false): Position {
    let node: unknown = this.doc.contents;
    let best: Position = { line: 1, col: 1 };
    best = this.start(node) ?? best;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(seg));
        if (!pair) return best;
        if (last && keyOf) return this.start(pair.key) ?? best;
        node = pair.value ?? pair.key;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
        if (node === undefined) return best;
      } else {
        return best;
      }
      best = this.start(node) ?? best;
    }
    return best;
  }

  private start(n: unknown): Position | undefined {
    const r = (n as Node | undefined)?.range;
    return r ? this.pos(r[0]) : undefined;
  }
}

/**
 * yaml's message, first line, without a long quote of the source (`...in YAML stream: "<source>"`
 * can quote many lines, secrets included): the position already points there.
 */
function shortMessage(message: string): string {
  const first = message.split('\n')[0];
  const m = /^(.*?): ("(?:[^"\\]|\\.)*")(.*)$/.exec(first);
  if (!m) return first;
  let quoted: string;
  try {
    quoted = JSON.parse(m[2]) as string;
  } catch {
    return m[1];
  }
  return quoted.length <= 24 && !quoted.includes('\n') ? first : `${m[1]}${m[3]}`;
}
