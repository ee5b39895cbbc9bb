/** Device affinity: each cell is pinned to one device for all its device-bound stages. */
export function assignDevices(cellIds: string[], devices: string[]): Record<string, string> {
  if (devices.length === 0) throw new Error('no devices: expected at least one (e.g. cpu:0)');
  return Object.fromEntries(cellIds.map((id, i) => [id, devices[i % devices.length]]));
}
