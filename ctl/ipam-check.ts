/**
 * `calicoctl ipam check`, the rules: fed host by host (a host's blocks and its endpoints), so it
 * holds one host's records at a time, never the cluster's. What crosses hosts (an address a host
 * borrowed from another's block) is set aside and settled at the end; per handle it keeps one
 * count. Pure: the reading is ctl/ipam-commands.ts's, the rules are unit tested alone.
 */
import type { BlockRecord, HandleRecord } from '../shared/datastore';
import { addressAt, cidrContains, formatAddress, parseAddress, parseCidr, type Cidr, type IpAddress } from '../shared/net';

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
  /**
   * Records that cannot be read, each skipped alone. What they may hold is not judged: the
   * allocations of a host with an unreadable endpoint are not called leaks, nor handles that name
   * an unreadable block.
   */
  readonly malformedRecords: { key: string; error: string }[];
}

/** A host's endpoint: its namespaced name and addresses (as in ipNetworks). */
export interface EndpointAddresses {
  readonly name: string;
  readonly addresses: readonly string[];
}

/** An allocation whose owner is on another host than the block's: checked against that host's endpoints. */
interface Borrowed {
  readonly address: string;
  readonly leak: LeakedAddress;
}

export class IpamChecker {
  private readonly report: CheckReport;
  private readonly handleCounts = new Map<string, number>();
  /** Owner node -> its allocations in other hosts' blocks. */
  private readonly borrowed = new Map<string, Borrowed[]>();
  /** Endpoint addresses outside their host's blocks (borrowed from another host's). */
  private elsewhere: { address: string; endpoint: string }[] = [];
  private readonly checkedBlocks = new Set<string>();
  /** Hosts with an endpoint record that cannot be read, and blocks that cannot be read. */
  private readonly unreadableHosts = new Set<string>();
  private readonly unreadableBlocks = new Set<string>();

  constructor(
    private readonly pools: readonly Cidr[],
    private readonly now: Date,
    /** Allocations younger than this may still be getting their endpoint: not leaks yet. */
    private readonly graceSeconds: number,
  ) {
    this.report = {
      generatedAt: now.toISOString(),
      summary: { blocks: 0, allocated: 0, handles: 0, endpoints: 0, problems: 0 },
      allocatedWithoutEndpoint: [],
      endpointAddressesNotAllocated: [],
      handlesWithoutAddresses: [],
      addressesOutsidePools: [],
      affinityMismatches: [],
      malformedRecords: [],
    };
  }

  /** A record that cannot be read: a host's endpoint (`host`), a block (`block`), or another. */
  malformed(key: string, error: string, of: { host?: string; block?: string } = {}): void {
    this.report.malformedRecords.push({ key, error });
    if (of.host !== undefined) this.unreadableHosts.add(of.host);
    if (of.block !== undefined) this.unreadableBlocks.add(of.block);
  }

  /** Whether a block was already checked (as some host's), so the sweep of unclaimed blocks skips it. */
  hasChecked(cidr: string): boolean {
    return this.checkedBlocks.has(cidr);
  }

  /**
   * One host: the blocks its affinities name (blocks that do not exist are left out) and its
   * endpoints. Allocations owned on this host must appear in one of its endpoints, or be one of
   * its tunnel addresses (its Node's VXLAN and IPIP ends); its endpoints' addresses must be allocated.
   */
  checkHost(host: string, blocks: readonly BlockRecord[], endpoints: readonly EndpointAddresses[], tunnelAddresses: readonly string[] = []): void {
    const addresses = new Set<string>(tunnelAddresses);
    for (const endpoint of endpoints) for (const network of endpoint.addresses) addresses.add(formatAddress(parseAddress(network.split('/')[0]!)));
    this.report.summary.endpoints += endpoints.length;
    const allocatedHere = new Set<string>();
    for (const block of blocks) {
      if (block.affinity !== `host:${host}`) this.mismatch(block.cidr, `host:${host}`, `the block says ${block.affinity ?? 'no host'}`);
      for (const a of this.allocations(block)) {
        allocatedHere.add(a.address);
        const owner = a.leak.node ?? host;
        if (owner !== host) this.setAside(this.borrowed, owner, a);
        else if (!addresses.has(a.address) && !this.unreadableHosts.has(host)) this.leak(a.leak);
      }
    }
    const cidrs = blocks.map((b) => parseCidr(b.cidr));
    for (const endpoint of endpoints) {
      for (const network of endpoint.addresses) {
        const address = parseAddress(network.split('/')[0]!);
        const text = formatAddress(address);
        // Addresses from another IPAM plugin (host-local) are not ours to judge.
        if (allocatedHere.has(text) || !this.inPool(address)) continue;
        if (cidrs.some((c) => cidrContains(c, address))) this.report.endpointAddressesNotAllocated.push({ endpoint: endpoint.name, address: text });
        else this.elsewhere.push({ address: text, endpoint: endpoint.name });
      }
    }
  }

  /** A block no host's affinity names. */
  checkUnclaimedBlock(block: BlockRecord): void {
    if (block.affinity?.startsWith('host:')) {
      this.mismatch(block.cidr, block.affinity, `host ${block.affinity.slice('host:'.length)} has no affinity record for it`);
    }
    for (const a of this.allocations(block)) this.setAside(this.borrowed, a.leak.node ?? '', a);
  }

  /** Owners on other hosts: `node`'s endpoint addresses settle what was set aside for it. */
  settleBorrowed(node: string, endpoints: readonly EndpointAddresses[], tunnelAddresses: readonly string[] = []): void {
    const addresses = new Set([...tunnelAddresses, ...endpoints.flatMap((e) => e.addresses.map((n) => formatAddress(parseAddress(n.split('/')[0]!))))]);
    for (const a of this.borrowed.get(node) ?? []) if (!addresses.has(a.address) && !this.unreadableHosts.has(node)) this.leak(a.leak);
    this.borrowed.delete(node);
  }

  /** The owner nodes whose endpoints `settleBorrowed` still needs. */
  ownersToSettle(): string[] {
    return [...this.borrowed.keys()];
  }

  /** Endpoint addresses that lie in some other host's block (borrowed): whose blocks to read. */
  addressesToSettle(): IpAddress[] {
    return [...new Set(this.elsewhere.map((e) => e.address))].map((a) => parseAddress(a));
  }

  /** Settles the endpoint addresses set aside, given which of them are allocated. */
  settleElsewhere(allocated: ReadonlySet<string>): void {
    for (const e of this.elsewhere) if (!allocated.has(e.address)) this.report.endpointAddressesNotAllocated.push(e);
    this.elsewhere = [];
  }

  /** One handle record, after every block was checked. */
  checkHandle(id: string, record: HandleRecord): void {
    this.report.summary.handles++;
    const recorded = Object.values(record.block).reduce((a, b) => a + b, 0);
    if (Object.keys(record.block).some((cidr) => this.unreadableBlocks.has(cidr))) return;
    if (recorded === 0 || !this.handleCounts.has(id)) this.report.handlesWithoutAddresses.push(id);
  }

  finish(): CheckReport {
    for (const list of this.borrowed.values()) for (const a of list) this.leak(a.leak);
    this.borrowed.clear();
    const r = this.report;
    r.summary.problems = r.allocatedWithoutEndpoint.length + r.endpointAddressesNotAllocated.length + r.handlesWithoutAddresses.length + r.addressesOutsidePools.length + r.affinityMismatches.length + r.malformedRecords.length;
    return r;
  }

  private *allocations(block: BlockRecord): Generator<Borrowed> {
    this.report.summary.blocks++;
    this.checkedBlocks.add(block.cidr);
    const cidr = parseCidr(block.cidr);
    for (let ordinal = 0; ordinal < block.allocations.length; ordinal++) {
      const index = block.allocations[ordinal];
      if (index === null || index === undefined) continue;
      const attribute = block.attributes[index]!;
      const ip = addressAt(cidr, BigInt(ordinal));
      const address = formatAddress(ip);
      this.report.summary.allocated++;
      if (attribute.handle_id) this.handleCounts.set(attribute.handle_id, (this.handleCounts.get(attribute.handle_id) ?? 0) + 1);
      if (!this.inPool(ip)) this.report.addressesOutsidePools.push({ address, block: block.cidr });
      const stamp = attribute.secondary?.timestamp;
      const node = attribute.secondary?.node;
      yield { address, leak: { address, handle: attribute.handle_id, ...(node ? { node } : {}), ...(stamp ? { timestamp: stamp } : {}) } };
    }
  }

  private inPool(address: IpAddress): boolean {
    return this.pools.some((p) => cidrContains(p, address));
  }

  private leak(leak: LeakedAddress): void {
    const age = leak.timestamp ? (this.now.getTime() - Date.parse(leak.timestamp)) / 1000 : Infinity;
    if (age >= this.graceSeconds) this.report.allocatedWithoutEndpoint.push(leak);
  }

  private mismatch(block: string, affinity: string, problem: string): void {
    this.report.affinityMismatches.push({ block, affinity, problem });
  }

  private setAside<T>(map: Map<string, T[]>, key: string, item: T): void {
    const list = map.get(key) ?? [];
    list.push(item);
    map.set(key, list);
  }
}
