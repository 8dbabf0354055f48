/**
 * IPAM: pure block operations run inside compare-and-swap loops against etcd, behind one queue
 * per client (group commit). Requests that arrive together are served together: one block read
 * and one transaction for a batch of allocations, one for a batch of releases, and one claim at a
 * time, so a long-lived client (the node daemon) serves a burst in a few transactions without
 * conflicting with itself. A short-lived client (a plugin without the daemon) is a batch of one;
 * several such processes stay correct through the revision guards, only slower.
 */
import { DEFAULT_IPAM_CONFIG, decodeEach, decodeIpamConfig, encodeIpamConfig, type Datastore, type IpamConfigRecord, type IPPoolSpec, type Resource } from '../datastore';
import { InvalidInputError } from '../errors';
import { formatAddress, type IpAddress } from '../net/address';
import { cidrsOverlap, enclosingCidr, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { Assigner, MAX_BATCH, type Assigned, type PoolChoice } from './assigner';
import type { Companion, Demand } from './batch';
import {
  allocatedAddresses,
  annotateAddress,
  assignAddress,
  attributeOf,
  hostAffinity,
  inUseCount,
  isEmpty,
  type AllocationAttribute,
  type Block,
  type HandleId,
  type OwnerTest,
} from './block';
import { BlockWriter, guardOf, type KnownHandle } from './block-writer';
import { casLoop, type Round } from './cas';
import { BlockClaimer } from './claim';
import { AddressOutsidePoolsError, InvalidPoolError, PoolsExhaustedError } from './errors';
import { GroupCommit, type Served } from './group-commit';
import { addToHandle, isValidHandleId } from './handle';
import { HostViews } from './host-view';
import { poolFromEntry, poolOf, rejectOverlap, reservedOrdinals, selectPools, validatePoolSpec, type Pool } from './pool';
import { Releaser, type ReleaseCompanion, type ReleaseJob, type Released } from './releaser';
import { blockFromEntry, handleFromEntry } from './records';

export interface AutoAssignRequest {
  readonly handle: HandleId;
  readonly node: string;
  readonly num4: number;
  readonly num6: number;
  /** Restrict to these pools (names or CIDRs); default: every enabled pool of the version. */
  readonly pools4?: readonly string[];
  readonly pools6?: readonly string[];
  /** Facts about the owner (orchestrator, container, interface...) stored with each address. */
  readonly attributes?: Readonly<Record<string, string>>;
  /** A record written in the allocation's transaction when it can be (see Companion). */
  readonly companion?: Companion;
}

export interface AssignRequest {
  readonly address: IpAddress;
  readonly handle: HandleId;
  readonly node: string;
  readonly pools?: readonly string[];
  readonly attributes?: Readonly<Record<string, string>>;
}

export interface AddressOwner {
  readonly address: IpAddress;
  readonly block: Cidr;
  readonly handle: HandleId | null;
  readonly attributes: Readonly<Record<string, string>>;
}

export interface BlockUsage {
  readonly cidr: Cidr;
  readonly affinity: string | null;
  readonly size: number;
  readonly inUse: number;
}

export type { CompanionOutcome, ReleaseCompanion, Released } from './releaser';

const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;
/** The most addresses of one version a request may ask for. */
const MAX_PER_REQUEST = 256;

type Job =
  | { readonly kind: 'auto'; readonly node: string; readonly pools: PoolChoice; readonly demand: Demand }
  | { readonly kind: 'assign'; readonly request: AssignRequest }
  | { readonly kind: 'release'; readonly release: ReleaseJob };

export class Ipam {
  private readonly writer: BlockWriter;
  private readonly claimer: BlockClaimer;
  private readonly views: HostViews;
  private readonly assigner: Assigner;
  private readonly releaser: Releaser;
  private readonly queue: GroupCommit<Job, unknown>;

  constructor(private readonly ds: Datastore) {
    this.writer = new BlockWriter(ds);
    this.claimer = new BlockClaimer(ds, this.writer);
    this.views = new HostViews(ds);
    this.assigner = new Assigner(ds, this.writer, this.claimer, this.views);
    this.releaser = new Releaser(ds, this.writer, () => this.pools());
    this.queue = new GroupCommit<Job, unknown>((_, jobs) => this.serve(jobs), MAX_BATCH);
  }

  private serve(jobs: Job[]): Promise<Served<unknown>[]> {
    const first = jobs[0]!;
    if (first.kind === 'auto') return this.assigner.assign(first.node, first.pools, jobs.map((j) => (j as Extract<Job, { kind: 'auto' }>).demand));
    if (first.kind === 'release') return this.releaser.release(jobs.map((j) => (j as Extract<Job, { kind: 'release' }>).release));
    // Specific addresses are rare: one at a time, still in turn with the batches.
    return Promise.all(jobs.map((j) => this.assignOne((j as Extract<Job, { kind: 'assign' }>).request).then(
      () => ({ ok: true as const, value: undefined }),
      (error: unknown) => ({ ok: false as const, error }),
    )));
  }

  // ---- allocation ----

  /** `companionWritten`: the request's companion record went in the allocation's transaction. */
  async autoAssign(request: AutoAssignRequest): Promise<{ ipv4: IpAddress[]; ipv6: IpAddress[]; companionWritten: boolean }> {
    validateOwner(request.handle, request.node);
    for (const [field, n] of [['num4', request.num4], ['num6', request.num6]] as const) {
      if (!Number.isInteger(n) || n < 0 || n > MAX_PER_REQUEST) throw new InvalidInputError(field, `${n} must be a whole number from 0 to ${MAX_PER_REQUEST}`);
    }
    if (request.num4 + request.num6 === 0) return { ipv4: [], ipv6: [], companionWritten: false };
    const demand: Demand = {
      count: { 4: request.num4, 6: request.num6 },
      attribute: attributeFor(request.handle, request.node, request.attributes),
      ...(request.companion ? { companion: request.companion } : {}),
    };
    const pools: PoolChoice = { 4: request.pools4, 6: request.pools6 };
    const key = `auto ${request.node} ${JSON.stringify(pools)}`;
    const { addresses, companionWritten } = (await this.queue.submit(key, { kind: 'auto', node: request.node, pools, demand })) as Assigned;
    return { ipv4: addresses.filter((a) => a.version === 4), ipv6: addresses.filter((a) => a.version === 6), companionWritten };
  }

  /** Allocates exactly `address` (as `docker run --ip` or a CNI `ips` request asks). */
  async assign(request: AssignRequest): Promise<void> {
    validateOwner(request.handle, request.node);
    await this.queue.submit('assign', { kind: 'assign', request });
  }

  private async assignOne(request: AssignRequest): Promise<void> {
    const text = formatAddress(request.address);
    const attribute = attributeFor(request.handle, request.node, request.attributes);
    let handle: KnownHandle = 'absent';
    await casLoop(`assignment of ${text}`, async (): Promise<Round<void>> => {
      const { view, pool } = await this.views.use(request.node, request.address.version, async (view) => {
        // Pools are named as in the network config: by name or by CIDR, as for automatic assignment.
        const candidates = request.pools?.length ? selectPools(view.pools, request.address.version, request.pools) : view.pools.filter((p) => !p.disabled);
        const found = poolOf(candidates, request.address);
        if (!found) throw new AddressOutsidePoolsError(text, request.pools?.length ? `of the pools ${request.pools.join(', ')}` : 'enabled IP pool');
        return { view, pool: found };
      });
      const cidr = enclosingCidr(request.address, pool.blockSize);
      const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
      if (!block) {
        // The block holding the address does not exist yet: claim exactly that one for this host.
        const claim = await this.claimer.claimSpecific(view, pool, cidr);
        if (claim === 'conflict') {
          this.views.forget(request.node, request.address.version);
          return 'conflict';
        }
        if ('none' in claim) throw new PoolsExhaustedError([formatCidr(cidr)], `cannot claim the block holding ${text}: ${claim.none}`);
        return 'again';
      }
      if (view.config.strict_affinity && block.value.affinity !== hostAffinity(request.node)) {
        throw new AddressOutsidePoolsError(text, `block of host ${request.node}: its block ${formatCidr(cidr)} belongs to ${block.value.affinity ?? 'no host'} and strict affinity is on`);
      }
      const after = assignAddress(block.value, request.address, attribute, reservedOrdinals(pool, cidr));
      const change = { id: request.handle, before: handle, after: addToHandle(handle === 'absent' ? undefined : handle.value, formatCidr(cidr), 1) };
      const outcome = await this.writer.write({
        blocks: [{ cidr, before: block, after }],
        handles: [change],
        guards: [guardOf(view.configKey, view.configRevision), { key: pool.key, expect: { modRevision: pool.modRevision } }],
      });
      if (outcome.ok) return { done: undefined };
      handle = outcome.handles.get(request.handle)!;
      if (outcome.changedGuards) this.views.forget(request.node, request.address.version);
      return 'conflict';
    });
  }

  // ---- release ----

  /** Frees those of the addresses that `owns` accepts; the rest are reported (release is idempotent). */
  async release(addresses: readonly IpAddress[], owns: OwnerTest): Promise<Released> {
    if (addresses.length === 0) return { released: [], notAllocated: [], notOwned: [] };
    return (await this.queue.submit('release', { kind: 'release', release: { addresses, owns } })) as Released;
  }

  /** Frees every address of a handle (that `owns` accepts) and updates its record; 0 when it held nothing. */
  async releaseByHandle(handle: HandleId, owns?: OwnerTest): Promise<number> {
    return (await this.releaseHandle(handle, owns ? { owns } : {})).released.length;
  }

  /** releaseByHandle, with `companion` (the workload's record) deleted in the same transaction where it is the workload's. */
  async releaseHandle(handle: HandleId, options: { readonly owns?: OwnerTest; readonly companion?: ReleaseCompanion }): Promise<Released> {
    if (!isValidHandleId(handle)) throw new InvalidInputError('handle', `"${handle}" is not a valid handle ID`);
    return (await this.queue.submit('release', { kind: 'release', release: { handle, ...options } })) as Released;
  }

  /** Records more about an allocated address's owner; false when it is not allocated, or not to an owner `owns` accepts. */
  async annotate(address: IpAddress, facts: Readonly<Record<string, string>>, owns: OwnerTest): Promise<boolean> {
    const cidr = await this.blockOf(address);
    if (!cidr) return false;
    return casLoop(`annotation of ${formatAddress(address)}`, async (): Promise<Round<boolean>> => {
      const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
      const attribute = block && attributeOf(block.value, address);
      if (!block || !attribute || !owns(attribute)) return { done: false };
      const outcome = await this.writer.write({ blocks: [{ cidr, before: block, after: annotateAddress(block.value, address, facts) }] });
      return outcome.ok ? { done: true } : 'conflict';
    });
  }

  // ---- queries ----

  async ownerOf(address: IpAddress): Promise<AddressOwner | undefined> {
    const cidr = await this.blockOf(address);
    if (!cidr) return undefined;
    const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
    const attribute = block && attributeOf(block.value, address);
    if (!attribute) return undefined;
    return { address, block: cidr, handle: attribute.handle_id, attributes: attribute.secondary ?? {} };
  }

  /** The addresses a handle holds now (a repeat IPAM ADD answers with these instead of allocating). */
  async handleAddresses(handle: HandleId): Promise<IpAddress[]> {
    const entry = await this.ds.kv.get(this.ds.keys.handle(handle));
    if (!entry) return [];
    const cidrs = Object.keys(handleFromEntry(entry).value.block).map((text) => parseCidr(text));
    const blocks = await this.writer.blocks(cidrs, { fresh: true });
    return [...blocks.values()].flatMap((block) => (block ? allocatedAddresses(block.value).filter((a) => a.attribute?.handle_id === handle).map((a) => a.address) : []));
  }

  /** Every block's usage, a page at a time (the cluster may hold any number of blocks). */
  async *blockPages(): AsyncGenerator<BlockUsage[]> {
    for (const version of [4, 6] as const) {
      for await (const page of this.ds.kv.pages(this.ds.keys.blockPrefix(version), { pageSize: 100 })) {
        yield decodeEach(page, (entry) => usageOf(blockFromEntry(entry).value));
      }
    }
  }

  /** Every allocated address of a block with its owner. */
  async addressesIn(cidr: Cidr): Promise<AddressOwner[]> {
    const block = (await this.writer.blocks([cidr], { fresh: true, skipMalformed: true })).get(formatCidr(cidr));
    if (!block) return [];
    return allocatedAddresses(block.value).map(({ address, attribute }) => ({
      address,
      block: cidr,
      handle: attribute?.handle_id ?? null,
      attributes: attribute?.secondary ?? {},
    }));
  }

  /** The blocks this host holds an affinity for, read from its own keys only. */
  async hostBlocks(node: string): Promise<Cidr[]> {
    validateNode(node);
    const cidrs: Cidr[] = [];
    for (const version of [4, 6] as const) {
      for (const entry of await this.ds.kv.list(this.ds.keys.hostAffinityPrefix(node, version), { keysOnly: true })) {
        const named = this.ds.keys.affinityOf(entry.key);
        if (named) cidrs.push(named.cidr);
      }
    }
    return cidrs;
  }

  /** The usage of this host's blocks, read from its own keys only. */
  async hostBlockUsage(node: string): Promise<BlockUsage[]> {
    const blocks = await this.writer.blocks(await this.hostBlocks(node), { fresh: true, skipMalformed: true });
    return [...blocks.values()].flatMap((b) => (b ? [usageOf(b.value)] : []));
  }

  /** The host's confirmed blocks that hold no address now. */
  async emptyBlocks(node: string): Promise<Cidr[]> {
    const cidrs = await this.hostBlocks(node);
    const blocks = await this.writer.blocks(cidrs, { fresh: true, skipMalformed: true });
    return cidrs.filter((cidr) => {
      const block = blocks.get(formatCidr(cidr));
      return block !== undefined && block.value.affinity === hostAffinity(node) && isEmpty(block.value);
    });
  }

  /**
   * Gives up the host's claim on one empty block: block and affinity deleted in one transaction
   * guarded by the block's revision, so a block that gained an address meanwhile stays. Returns
   * whether it was released.
   */
  async releaseEmptyBlock(node: string, cidr: Cidr): Promise<boolean> {
    validateNode(node);
    const key = this.ds.keys.affinity(node, cidr);
    const [affinity] = await this.ds.kv.readMany([{ key }]);
    const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
    if (block && (!isEmpty(block.value) || block.value.affinity !== hostAffinity(node))) return false;
    const deletes = affinity![0] ? [{ key, modRevision: affinity![0].modRevision }] : [];
    const outcome = block
      ? await this.writer.write({ blocks: [{ cidr, before: block, after: null }], deletes })
      : await this.ds.kv.txn(deletes.map((d) => ({ key: d.key, delete: true as const, expect: { modRevision: d.modRevision } })));
    this.views.forget(node, cidr.version);
    return outcome.ok && (block !== undefined || deletes.length > 0);
  }

  /** Gives up every empty block of the host but `keep` of them; returns those released. */
  async releaseEmptyBlocks(node: string, keep = 0): Promise<Cidr[]> {
    const released: Cidr[] = [];
    for (const cidr of (await this.emptyBlocks(node)).slice(keep)) if (await this.releaseEmptyBlock(node, cidr)) released.push(cidr);
    return released;
  }

  // ---- pools and config ----

  async pools(): Promise<Pool[]> {
    return decodeEach(await this.ds.kv.list(this.ds.keys.resourcePrefix('IPPool')), poolFromEntry);
  }

  /**
   * Refuses a pool that overlaps another pool or a registered host's own subnet (a workload
   * address there would shadow a host, and the subnet's network address would be handed out).
   */
  async checkPool(name: string, cidr: Cidr): Promise<void> {
    rejectOverlap(name, cidr, await this.pools());
    for await (const page of this.ds.resources.pages('Node', { skipMalformed: true })) {
      for (const node of page) {
        for (const text of [node.spec.bgp?.ipv4Address, node.spec.bgp?.ipv6Address]) {
          if (!text) continue;
          let subnet: Cidr;
          try {
            subnet = parseCidr(text, 'node address', true);
          } catch {
            continue;
          }
          const network = enclosingCidr({ version: subnet.version, value: subnet.network }, subnet.prefix);
          if (cidrsOverlap(network, cidr)) throw new InvalidPoolError(`pool ${name}: ${formatCidr(cidr)} overlaps host ${node.metadata.name}'s subnet ${formatCidr(network)}`);
        }
      }
    }
  }

  /** Validates and creates a pool; overlapping or malformed pools are refused. */
  async createPool(name: string, spec: IPPoolSpec): Promise<Resource<'IPPool'>> {
    const { cidr, spec: full } = validatePoolSpec(name, spec);
    await this.checkPool(name, cidr);
    try {
      return await this.ds.resources.create({ kind: 'IPPool', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: full });
    } catch (err) {
      if ((err as { code?: string }).code === 'DATASTORE_ALREADY_EXISTS') throw new InvalidPoolError(`pool ${name} already exists`);
      throw err;
    }
  }

  /** The IPAM configuration, or Calico's defaults when none is stored. */
  async config(): Promise<IpamConfigRecord> {
    const entry = await this.ds.kv.get(this.ds.keys.ipamConfig());
    return entry ? decodeIpamConfig(entry.key, entry.value) : DEFAULT_IPAM_CONFIG;
  }

  async setConfig(config: IpamConfigRecord): Promise<void> {
    const key = this.ds.keys.ipamConfig();
    await this.ds.kv.txn([{ key, put: encodeIpamConfig(config) }]);
    this.views.clear();
  }

  /** The block an address falls in: by its pool's block size (pools are few), else none. */
  private async blockOf(address: IpAddress): Promise<Cidr | undefined> {
    const pool = poolOf(await this.pools(), address);
    return pool ? enclosingCidr(address, pool.blockSize) : undefined;
  }
}

function usageOf(block: Block): BlockUsage {
  return { cidr: block.cidr, affinity: block.affinity, size: block.allocations.length, inUse: inUseCount(block) };
}

function validateOwner(handle: string, node: string): void {
  if (!isValidHandleId(handle)) throw new InvalidInputError('handle', `"${handle}" must be 1-1024 characters with no "/" or white space`);
  validateNode(node);
}

function validateNode(node: string): void {
  if (typeof node !== 'string' || !NODE_NAME.test(node)) throw new InvalidInputError('node', `"${node}" is not a valid host name`);
}

function attributeFor(handle: HandleId, node: string, extra: Readonly<Record<string, string>> = {}): AllocationAttribute {
  return { handle_id: handle, secondary: { ...extra, node, timestamp: new Date().toISOString() } };
}
