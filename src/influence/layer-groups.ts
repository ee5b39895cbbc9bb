/**
 * Layer groups for NDR experiments (SCIENCE.md §4): WE (word embedding), k equal groups of
 * transformer blocks, CL (classifier), all, and custom lists.
 * Block group g of k over blocks b_0 < … < b_{L−1} holds blocks with index position in
 * [floor(g·L/k), floor((g+1)·L/k)).
 */
import { ConfigError, DataError } from '../errors.ts';
import type { UnitRef } from './types.ts';

export interface LayerGroup {
  name: string;
  units: string[];
}

export interface LayerGroupsArgs {
  units: UnitRef[];
  /** Number of equal block groups (default 4). */
  blockGroups?: number;
  /** Custom groups: a list of block indices or unit names each. */
  custom?: Record<string, Array<number | string>>;
}

/** Standard groups WE, blocks a–b (×k), CL, all, plus custom ones; empty groups are omitted. */
export function layerGroups({ units, blockGroups = 4, custom = {} }: LayerGroupsArgs): LayerGroup[] {
  if (!Number.isInteger(blockGroups) || blockGroups < 1) throw new ConfigError(`layerGroups: blockGroups = ${blockGroups}; expected an integer ≥ 1`);
  if (units.length === 0) throw new DataError('layerGroups: no units; expected at least one');
  const kind = (u: UnitRef) => u.kind ?? 'block';
  const groups: LayerGroup[] = [];
  const push = (name: string, us: UnitRef[]) => { if (us.length > 0) groups.push({ name, units: us.map((u) => u.unit) }); };
  push('WE', units.filter((u) => kind(u) === 'embedding'));
  const blocks = [...new Set(units.filter((u) => kind(u) === 'block').map((u) => u.layer))].sort((a, b) => a - b);
  const L = blocks.length;
  if (L > 0 && blockGroups > L) throw new ConfigError(`layerGroups: ${blockGroups} block groups requested but the model has only ${L} blocks`);
  for (let g = 0; g < blockGroups && L > 0; g++) {
    const sel = blocks.slice(Math.floor((g * L) / blockGroups), Math.floor(((g + 1) * L) / blockGroups));
    push(`blocks ${sel[0]}-${sel[sel.length - 1]}`, units.filter((u) => kind(u) === 'block' && sel.includes(u.layer)));
  }
  push('CL', units.filter((u) => kind(u) === 'classifier'));
  push('all', units);
  for (const [name, items] of Object.entries(custom)) {
    const sel = units.filter((u) => items.includes(u.unit) || (kind(u) === 'block' && items.includes(u.layer)));
    const missing = items.filter((x) => !units.some((u) => u.unit === x || (kind(u) === 'block' && u.layer === x)));
    if (missing.length > 0) throw new ConfigError(`layerGroups: custom group "${name}" names ${missing.join(', ')}, which match no unit or block`);
    push(name, sel);
  }
  return groups;
}
