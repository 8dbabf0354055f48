/**
 * `--plant`: one fault of the checker's own kind, written by the soak itself, to show that the
 * checker's zeros mean something. A duplicate is planted while the soak runs (a live workload's
 * address allocated a second time); a leak and an orphan once everything is stopped and the
 * collectors have run, just before the final check (the collectors would rightly remove them).
 */
import { encodeBlock, encodeHandle } from '../shared/datastore';
import { formatAddress } from '../shared/net/address';
import { parseCidr } from '../shared/net';
import type { Workload } from './workload';
import type { SoakWorld } from './world';

export const PLANT_KINDS = ['duplicate', 'leak', 'orphan'] as const;
export type PlantKind = (typeof PLANT_KINDS)[number];

const PLANTED_HANDLE = 'soak-planted';

/** A /32 block of its own holding `workload`'s address for an owner nobody has (what a buggy writer could leave). */
export async function plantDuplicate(world: SoakWorld, workload: Workload): Promise<string> {
  const cidr = `${workload.ips[0]!}/32`;
  const { keys } = world.ds;
  await world.ds.kv.txn([
    { key: keys.block(parseCidr(cidr)), put: encodeBlock({ cidr, affinity: null, strictAffinity: false, allocations: [0], unallocated: [], attributes: [{ handle_id: PLANTED_HANDLE, secondary: null }], deleted: false }) },
    { key: keys.handle(PLANTED_HANDLE), put: encodeHandle({ block: { [cidr]: 1 }, deleted: false }) },
  ]);
  return `${workload.ips[0]} of ${workload.kind} ${workload.id} allocated again in block ${cidr}`;
}

/** An address allocated through IPAM for an owner that does not exist. */
export async function plantLeak(world: SoakWorld): Promise<string> {
  const { ipv4 } = await world.ipam.autoAssign({ handle: PLANTED_HANDLE, node: world.agents[0]!.name, num4: 1, num6: 0 });
  return `${ipv4.map(formatAddress).join(', ')} allocated for ${PLANTED_HANDLE}`;
}

/** A workload-style link on an agent that no endpoint names. */
export async function plantOrphan(world: SoakWorld): Promise<string> {
  const agent = world.agents[0]!;
  await agent.host.ip('link', 'add', 'caliplanted0', 'type', 'veth', 'peer', 'name', 'planted0');
  return `link caliplanted0 on ${agent.name}`;
}
