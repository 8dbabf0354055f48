/**
 * Reads every IPAM record under a prefix straight from etcd and checks that blocks, handles and
 * affinities agree: the test's word on leaks and double allocation.
 */
import { decodeAffinity, decodeBlock, decodeHandle, type Datastore } from '../../shared/datastore';
import { formatAddress } from '../../shared/net/address';
import { addressAt, parseCidr } from '../../shared/net/cidr';

export interface IpamState {
  /** address -> handle, for every allocated address. */
  readonly allocated: Map<string, string | null>;
  /** handle id -> block cidr -> count. */
  readonly handles: Map<string, Record<string, number>>;
  readonly blocks: { cidr: string; affinity: string | null; inUse: number }[];
  readonly affinities: { host: string; cidr: string; state: string }[];
  /** Disagreements found; empty when consistent. */
  readonly problems: string[];
}

/** `ignore`: keys left out (records a test wrote malformed on purpose). */
export async function readIpamState(ds: Datastore, ignore: (key: string) => boolean = () => false): Promise<IpamState> {
  const ipamPrefix = `${ds.keys.prefix}/ipam/v2/`;
  const entries = await ds.kv.list(ipamPrefix);
  const allocated = new Map<string, string | null>();
  const handles = new Map<string, Record<string, number>>();
  const blocks: IpamState['blocks'] = [];
  const affinities: IpamState['affinities'] = [];
  const problems: string[] = [];
  const countsFromBlocks = new Map<string, Map<string, number>>();

  for (const entry of entries) {
    if (ignore(entry.key)) continue;
    if (entry.key.includes('/assignment/')) {
      const block = decodeBlock(entry.key, entry.value);
      const cidr = parseCidr(block.cidr);
      let inUse = 0;
      block.allocations.forEach((index, ordinal) => {
        if (index === null) return;
        inUse++;
        const handle = block.attributes[index]!.handle_id;
        const address = formatAddress(addressAt(cidr, BigInt(ordinal)));
        if (allocated.has(address)) problems.push(`${address} allocated twice`);
        allocated.set(address, handle);
        if (handle) {
          const perBlock = countsFromBlocks.get(handle) ?? new Map<string, number>();
          perBlock.set(block.cidr, (perBlock.get(block.cidr) ?? 0) + 1);
          countsFromBlocks.set(handle, perBlock);
        }
      });
      blocks.push({ cidr: block.cidr, affinity: block.affinity, inUse });
    } else if (entry.key.includes('/handle/')) {
      handles.set(entry.key.slice(ds.keys.handlePrefix().length), { ...decodeHandle(entry.key, entry.value).block });
    } else if (entry.key.includes('/host/')) {
      const named = ds.keys.affinityOf(entry.key)!;
      affinities.push({ host: named.host, cidr: `${formatAddress({ version: named.cidr.version, value: named.cidr.network })}/${named.cidr.prefix}`, state: decodeAffinity(entry.key, entry.value).state });
    }
  }
  for (const [handle, perBlock] of countsFromBlocks) {
    const recorded = handles.get(handle);
    if (!recorded) problems.push(`handle ${handle} owns addresses but has no record`);
    for (const [cidr, count] of perBlock) if (recorded && recorded[cidr] !== count) problems.push(`handle ${handle} records ${recorded[cidr]} in ${cidr}, block has ${count}`);
  }
  for (const [handle, recorded] of handles) {
    for (const [cidr, count] of Object.entries(recorded)) {
      if ((countsFromBlocks.get(handle)?.get(cidr) ?? 0) !== count) problems.push(`handle ${handle} records ${count} in ${cidr}, block disagrees`);
    }
  }
  for (const block of blocks) {
    const host = block.affinity?.replace(/^host:/, '');
    if (host && !affinities.some((a) => a.host === host && a.cidr === block.cidr)) problems.push(`block ${block.cidr} names ${block.affinity} but that host has no affinity`);
  }
  return { allocated, handles, blocks, affinities, problems };
}
