#!/usr/bin/env node
// The registry mirror this project is developed against lacks some optional platform
// packages (e.g. @swc/core-darwin-arm64). `npm install` then writes a lockfile that names them
// as optional dependencies without entries, and `npm ci` refuses it. This drops optional
// dependencies that have no entry in the lockfile. Run after `npm install`.
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const pk = lock.packages;
const removed = [];
for (const [path, entry] of Object.entries(pk)) {
  for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
    if (!pk[`${path ? `${path}/` : ''}node_modules/${dep}`] && !pk[`node_modules/${dep}`]) {
      delete entry.optionalDependencies[dep];
      removed.push(`${path || '(root)'} → ${dep}`);
    }
  }
}
writeFileSync('package-lock.json', JSON.stringify(lock, null, 2) + '\n');
console.log(removed.length ? `dropped ${removed.length} unavailable optional dependencies:\n  ${removed.join('\n  ')}` : 'lockfile OK');
