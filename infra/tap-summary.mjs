#!/usr/bin/env node
// Reads ava's TAP output on stdin, passes it through, and ends with the line CI reads:
// `N passed, N failed`. Exits non-zero when anything failed or the run ended early.
import { createInterface } from 'node:readline';

let passed = 0;
let failed = 0;
let planned = -1;
let bailed = false;
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  console.log(line);
  if (/^ok \d+/.test(line) && !/# SKIP/i.test(line)) passed++;
  else if (/^not ok \d+/.test(line) && !/# TODO/i.test(line)) failed++;
  const plan = /^1\.\.(\d+)/.exec(line);
  if (plan) planned = Number(plan[1]);
  if (/^Bail out!/.test(line)) bailed = true;
});
rl.on('close', () => {
  const incomplete = planned < 0 || bailed;
  if (incomplete) failed = Math.max(failed, 1);
  if (incomplete) console.log('# the test run ended before ava printed its plan (crash or timeout)');
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
});
