/** The embedded services bind 127.0.0.1 by default, and their status says who can reach them. */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bindNote, serviceStatus } from '../../infra/services.ts';
import { resolveEnv } from '../../src/config/env.ts';

test('bind notes: loopback is this machine only, anything else is reachable from the network', (t) => {
  t.is(bindNote('127.0.0.1:7233'), 'bound to 127.0.0.1 (this machine only)');
  t.is(bindNote('http://127.0.0.1:5000'), 'bound to 127.0.0.1 (this machine only)');
  t.is(bindNote('localhost:7233'), 'bound to localhost (this machine only)');
  t.is(bindNote('[::1]:7233'), 'bound to ::1 (this machine only)');
  t.regex(bindNote('0.0.0.0:7233'), /^bound to 0\.0\.0\.0 \(reachable from the network/);
  t.regex(bindNote('http://10.1.2.3:5000'), /^bound to 10\.1\.2\.3 \(reachable from the network/);
});

test('the default addresses are loopback, and a status carries its bind note', async (t) => {
  const e = resolveEnv({}, {});
  t.is(e.temporalAddress, '127.0.0.1:7233');
  t.is(e.mlflowUri, 'http://127.0.0.1:5000');
  const home = await mkdtemp(join(tmpdir(), 'lf-svc-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const s = await serviceStatus(home, 'mlflow', e.mlflowUri);
  t.false(s.running);
  t.is(s.bind, 'bound to 127.0.0.1 (this machine only)');
});
