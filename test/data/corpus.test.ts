import test from 'ava';
import { ConfigError, DataError } from '../../src/errors.ts';
import { loadMobyDick, loadStateOfTheUnion, splitDocuments } from '../../src/data/corpus.ts';

test('Moby Dick: 135 chapters plus front matter and epilogue, in book order', (t) => {
  const docs = loadMobyDick();
  t.is(docs.length, 139);
  t.is(docs[0].id, 'moby-dick/contents');
  t.is(docs[3].id, 'moby-dick/chapter_1');
  t.is(docs.at(-1)!.id, 'moby-dick/epilogue');
  t.true(docs[3].text.includes('Call me Ishmael.'));
  t.is(docs[3].meta.chapter, 1);
  t.true(docs.every((d) => d.text.length > 0));
  const chapters = loadMobyDick({ chaptersOnly: true });
  t.is(chapters.length, 135);
  t.deepEqual(chapters.map((d) => d.meta.chapter), Array.from({ length: 135 }, (_, i) => i + 1));
  const chars = docs.reduce((s, d) => s + d.text.length, 0);
  t.true(chars > 1_000_000, `${chars} characters`);
});

test('State of the Union: chronological addresses with year, name and party', (t) => {
  const docs = loadStateOfTheUnion();
  t.true(docs.length > 200, `${docs.length} addresses`);
  t.is(docs[0].id, 'sotu/1790_george_washington_n');
  t.deepEqual(docs[0].meta, { year: 1790, name: 'George Washington', party: 'none' });
  t.true(docs[0].text.startsWith('Fellow-Citizens of the Senate and House of Representatives'));
  t.true(docs.every((d) => d.text.length > 1000));
  const years = docs.map((d) => d.meta.year as number);
  t.deepEqual(years, [...years].sort((a, b) => a - b));
  const some = loadStateOfTheUnion({ fromYear: 1800, toYear: 1809 });
  t.true(some.length >= 9 && some.every((d) => (d.meta.year as number) >= 1800 && (d.meta.year as number) <= 1809));
  t.throws(() => loadStateOfTheUnion({ fromYear: 3000 }), { instanceOf: DataError });
});

test('splitDocuments: deterministic per seed, disjoint, covers everything, order kept', (t) => {
  const docs = loadMobyDick();
  const a = splitDocuments(docs, { validationFraction: 0.1, seed: 7 });
  const b = splitDocuments([...docs].reverse(), { validationFraction: 0.1, seed: 7 });
  t.is(a.validation.length, 14);
  t.is(a.train.length, 125);
  t.deepEqual(a.validation.map((d) => d.id).sort(), b.validation.map((d) => d.id).sort(), 'independent of input order');
  const c = splitDocuments(docs, { validationFraction: 0.1, seed: 8 });
  t.notDeepEqual(a.validation.map((d) => d.id), c.validation.map((d) => d.id));
  const all = new Set([...a.train, ...a.validation].map((d) => d.id));
  t.is(all.size, docs.length);
  const idx = (d: { id: string }) => docs.findIndex((x) => x.id === d.id);
  t.deepEqual(a.train.map(idx), [...a.train.map(idx)].sort((x, y) => x - y));
  t.throws(() => splitDocuments(docs, { validationFraction: 1 }), { instanceOf: ConfigError });
  t.throws(() => splitDocuments(docs.slice(0, 1)), { instanceOf: DataError });
  t.throws(() => splitDocuments([docs[0], docs[0]]), { instanceOf: DataError, message: /not unique/ });
});
