/**
 * `calicoctl ipam check`: reads blocks, handles, endpoints, pools and affinities at once and
 * reports what disagrees. Pure over what was read, so the rules are unit tested alone.
 */
import type { BlockRecord, HandleRecord } from '../shared/datastore';
import { formatAddress, parseAddress, parseCidr, cidrContains, addressAt, type Cidr } from '../shared/net';

export interface CheckInput {
  readonly blocks: readonly BlockRecord[];
  readonly handles: ReadonlyMap<string, HandleRecord>;
  /** Endpoint name -> its addresses (as in ipNetworks). */
  readonly endpoints: ReadonlyMap<string, readonly string[]>;
  readonly pools: readonly Cidr[];
  /** "host/cidr" for every affinity record. */
  readonly affinities: ReadonlySet<string>;
  readonly now: Date;
  /** Allocations younger than this may still be getting their endpoint: not leaks yet. */
  readonly graceSeconds: number;
}

export interface LeakedAddress {
  readonly address: string;
  readonly handle: string | null;
  readonly node?: string;
  /** The allocation's timestamp attribute: what `ipam release` checks is unchanged. */
  readonly timestamp?: string;
}

export interface CheckReport {
  readonly generatedAt: string;
  readonly summary: { blocks: number; allocated: number; handles: number; endpoints: number; problems: number };
  readonly allocatedWithoutEndpoint: LeakedAddress[];
  readonly endpointAddressesNotAllocated: { endpoint: string; address: string }[];
  readonly handlesWithoutAddresses: string[];
  readonly addressesOutsidePools: { address: string; block: string }[];
  readonly affinityMismatches: { block: string; affinity: string; problem: string }[];
}

export function checkIpam(input: CheckInput): CheckReport {
  const allocated = new Map<string, { handle: string | null; secondary: Record<string, string> | null; block: string }>();
  const countsByHandle = new Map<string, number>();
  const report: CheckReport = {
    generatedAt: input.now.toISOString(),
    summary: { blocks: input.blocks.length, allocated: 0, handles: input.handles.size, endpoints: input.endpoints.size, problems: 0 },
    allocatedWithoutEndpoint: [],
    endpointAddressesNotAllocated: [],
    handlesWithoutAddresses: [],
    addressesOutsidePools: [],
    affinityMismatches: [],
  };
  for (const block of input.blocks) {
    const cidr = parseCidr(block.cidr);
    block.allocations.forEach((index, ordinal) => {
      if (index === null) return;
      const attribute = block.attributes[index]!;
      const address = formatAddress(addressAt(cidr, BigInt(ordinal)));
      allocated.set(address, { handle: attribute.handle_id, secondary: attribute.secondary as Record<string, string> | null, block: block.cidr });
      if (attribute.handle_id) countsByHandle.set(attribute.handle_id, (countsByHandle.get(attribute.handle_id) ?? 0) + 1);
      if (!input.pools.some((p) => cidrContains(p, addressAt(cidr, BigInt(ordinal))))) report.addressesOutsidePools.push({ address, block: block.cidr });
    });
    if (block.affinity?.startsWith('host:')) {
      const host = block.affinity.slice('host:'.length);
      if (!input.affinities.has(`${host}/${block.cidr}`)) report.affinityMismatches.push({ block: block.cidr, affinity: block.affinity, problem: `host ${host} has no affinity record for it` });
    }
  }
  for (const affinity of input.affinities) {
    const slash = affinity.indexOf('/');
    const host = affinity.slice(0, slash);
    const block = affinity.slice(slash + 1);
    const record = input.blocks.find((b) => b.cidr === block);
    if (record && record.affinity !== `host:${host}`) report.affinityMismatches.push({ block, affinity: `host:${host}`, problem: `the block says ${record.affinity ?? 'no host'}` });
  }
  report.summary.allocated = allocated.size;

  const endpointAddresses = new Set<string>();
  for (const [endpoint, networks] of input.endpoints) {
    for (const network of networks) {
      const address = formatAddress(parseAddress(network.split('/')[0]!));
      endpointAddresses.add(address);
      const inPool = input.pools.some((p) => cidrContains(p, parseAddress(address)));
      // Addresses from another IPAM plugin (host-local) are not ours to judge.
      if (inPool && !allocated.has(address)) report.endpointAddressesNotAllocated.push({ endpoint, address });
    }
  }
  for (const [address, owner] of allocated) {
    if (endpointAddresses.has(address)) continue;
    const stamp = owner.secondary?.timestamp;
    const age = stamp ? (input.now.getTime() - Date.parse(stamp)) / 1000 : Infinity;
    if (age < input.graceSeconds) continue;
    report.allocatedWithoutEndpoint.push({ address, handle: owner.handle, ...(owner.secondary?.node ? { node: owner.secondary.node } : {}), ...(stamp ? { timestamp: stamp } : {}) });
  }
  for (const [handle, record] of input.handles) {
    const recorded = Object.values(record.block).reduce((a, b) => a + b, 0);
    if (recorded === 0 || !countsByHandle.has(handle)) report.handlesWithoutAddresses.push(handle);
  }
  report.summary.problems = report.allocatedWithoutEndpoint.length + report.endpointAddressesNotAllocated.length + report.handlesWithoutAddresses.length + report.addressesOutsidePools.length + report.affinityMismatches.length;
  return report;
}
