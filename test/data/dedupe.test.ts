import test from 'ava';
import { dedupeExamples, normalizeWhitespace } from '../../src/data/dedupe.ts';
import { loadSpamAssassin } from '../../src/data/spam-assassin.ts';
import type { ClassificationExample } from '../../src/data/types.ts';

const ex = (rows: Array<[string, number]>): ClassificationExample[] => rows.map(([text, label], id) => ({ id, text, label }));

test('exact duplicates: the first occurrence is kept, later ones removed and grouped', (t) => {
  const examples = ex([['a', 0], ['b', 1], ['a', 0], ['c', 0], ['b', 1], ['a', 0], ['a ', 0]]);
  const r = dedupeExamples(examples);
  t.deepEqual(r.kept.map((e) => e.id), [0, 1, 3, 6]);
  t.deepEqual(r.kept[3], { id: 6, text: 'a ', label: 0 });
  t.is(r.removed, 3);
  t.is(r.conflicting, 0);
  t.deepEqual(r.groups, [
    { keptId: 0, removedIds: [2, 5], conflicting: 0 },
    { keptId: 1, removedIds: [4], conflicting: 0 },
  ]);
  t.is(r.kept.length + r.removed, examples.length);
  // Nothing to remove: everything kept, no groups.
  t.deepEqual(dedupeExamples(ex([['x', 0], ['y', 1]])), { kept: ex([['x', 0], ['y', 1]]), removed: 0, conflicting: 0, groups: [] });
  t.deepEqual(dedupeExamples([]), { kept: [], removed: 0, conflicting: 0, groups: [] });
});

test('duplicates with a different label: first kept, counted as conflicting', (t) => {
  const r = dedupeExamples(ex([['win money', 1], ['hi', 0], ['win money', 0], ['win money', 1], ['hi', 1]]));
  t.deepEqual(r.kept.map((e) => [e.id, e.label]), [[0, 1], [1, 0]]);
  t.is(r.removed, 3);
  t.is(r.conflicting, 2);
  t.deepEqual(r.groups, [
    { keptId: 0, removedIds: [2, 3], conflicting: 1 },
    { keptId: 1, removedIds: [4], conflicting: 1 },
  ]);
});

test('whitespace-normalised comparison, or a custom key', (t) => {
  t.is(normalizeWhitespace('  a \t b\r\n\nc  '), 'a b c');
  const examples = ex([['hello  world', 0], ['hello world\n', 0], [' hello\tworld', 1], ['Hello world', 0]]);
  t.is(dedupeExamples(examples).removed, 0);
  const ws = dedupeExamples(examples, true);
  t.deepEqual(ws.kept.map((e) => e.id), [0, 3]);
  t.is(ws.kept[0].text, 'hello  world'); // original text kept
  t.is(ws.removed, 2);
  t.is(ws.conflicting, 1);
  const ci = dedupeExamples(examples, (s) => normalizeWhitespace(s).toLowerCase());
  t.deepEqual(ci.kept.map((e) => e.id), [0]);
  t.is(ci.removed, 3);
});

test('SpamAssassin (headers stripped): 171 exact duplicate bodies in 126 groups, none with conflicting labels', (t) => {
  const ds = loadSpamAssassin();
  if (ds.kind !== 'classification') return t.fail();
  const r = dedupeExamples(ds.examples);
  t.log(`exact: removed ${r.removed} of ${ds.examples.length} in ${r.groups.length} groups, ${r.conflicting} conflicting`);
  t.is(r.removed, 171);
  t.is(r.groups.length, 126);
  t.is(r.conflicting, 0);
  t.is(r.kept.length, 6046 - 171);
  // Per kept label: 38 ham and 133 spam duplicates (spam-2 alone has 103).
  const byLabel = [0, 1].map((y) => r.groups.filter((g) => ds.examples[g.keptId].label === y).reduce((s, g) => s + g.removedIds.length, 0));
  t.deepEqual(byLabel, [38, 133]);
  const ws = dedupeExamples(ds.examples, true);
  t.log(`whitespace-normalised: removed ${ws.removed} in ${ws.groups.length} groups`);
  t.is(ws.removed, 207);
  t.is(ws.groups.length, 146);
  // With headers the messages are all distinct (Message-ID, Received, …).
  const raw = loadSpamAssassin({ stripHeaders: false });
  if (raw.kind === 'classification') t.is(dedupeExamples(raw.examples).removed, 0);
});
