import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, type Document, type Node } from 'yaml';

export type FieldPath = Array<string | number>;

export interface Position {
  line: number;
  col: number;
}

/** A parsed YAML file that remembers where every node came from. */
export class YamlSource {
  readonly doc: Document;
  private readonly lines = new LineCounter();

  constructor(readonly file: string, readonly text: string) {
    this.doc = parseDocument(text, { lineCounter: this.lines, uniqueKeys: true, prettyErrors: false });
  }

  /** YAML syntax errors, with positions. */
  syntaxErrors(): Array<{ pos: Position; message: string }> {
    return [...this.doc.errors, ...this.doc.warnings.filter(() => false)].map((e) => ({
      pos: this.pos(e.pos[0]),
      message: e.message.split('\n')[0],
    }));
  }

  pos(offset: number): Position {
    const { line, col } = this.lines.linePos(offset);
    return { line, col };
  }

  /** Position of the value at `path`; `keyOf` gives the position of the map key instead. */
  locate(path: FieldPath, keyOf = false): Position {
    let node: unknown = this.doc.contents;
    let best: Position = { line: 1, col: 1 };
    const start = (n: unknown): Position | undefined => {
      const r = (n as Node | undefined)?.range;
      return r ? this.pos(r[0]) : undefined;
    };
    best = start(node) ?? best;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(seg));
        if (!pair) return best;
        if (last && keyOf) return start(pair.key) ?? best;
        node = pair.value ?? pair.key;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
        if (node === undefined) return best;
      } else {
        return best;
      }
      best = start(node) ?? best;
    }
    return best;
  }
}
