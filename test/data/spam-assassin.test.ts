import test from 'ava';
import { DataError } from '../../src/errors.ts';
import { loadSpamAssassin, stripEmailHeaders } from '../../src/data/spam-assassin.ts';

test('SpamAssassin loads from the package data files with spam = 1, ham = 0', (t) => {
  const ds = loadSpamAssassin({ groups: ['easy-ham-1', 'spam-1'], limitPerGroup: 20 });
  t.is(ds.kind, 'classification');
  if (ds.kind !== 'classification') return;
  t.is(ds.examples.length, 40);
  t.is(ds.examples.filter((e) => e.label === 1).length, 20);
  t.deepEqual(ds.labelNames, ['ham', 'spam']);
  t.true(ds.examples.every((e) => typeof e.text === 'string' && e.text.length > 0 && !e.text.startsWith('From ')));
  const raw = loadSpamAssassin({ groups: ['hard-ham-1'], limitPerGroup: 1, stripHeaders: false });
  t.true((raw.examples[0] as { text: string }).text.includes('Received:'));
  t.throws(() => loadSpamAssassin({ groups: ['nope'] }), { instanceOf: DataError, message: /unknown group/ });
});

test('full corpus: 6046 messages in five groups', (t) => {
  const ds = loadSpamAssassin();
  t.is(ds.examples.length, 6046);
  if (ds.kind === 'classification') t.true(ds.examples.filter((e) => e.label === 1).length > 1000);
  t.is(stripEmailHeaders('A: b\nC: d\n\nbody\n\nmore'), 'body\n\nmore');
});
