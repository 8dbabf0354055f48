/**
 * The allocator: pure block operations run inside compare-and-swap loops against etcd.
 * One allocation writes its block and its handle in one transaction, guarded by the revisions of
 * the pool, the host's affinity and the IPAM config it relied on, so caching those is safe.
 */
import { DEFAULT_IPAM_CONFIG, MalformedDataError, decodeIpamConfig, encodeIpamConfig, type Datastore, type IpamConfigRecord, type IPPoolSpec, type Resource } from '../datastore';
import { InvalidInputError } from '../errors';
import { formatAddress, type IpAddress, type IpVersion } from '../net/address';
import { enclosingCidr, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import {
  allocatedAddresses,
  annotateAddress,
  assignAddress,
  attributeOf,
  autoAssign,
  hostAffinity,
  inUseCount,
  isEmpty,
  newBlock,
  releaseAddresses,
  releaseHandle,
  type AllocationAttribute,
  type Block,
  type HandleId,
  type Release,
} from './block';
import { BlockWriter, guardOf, type Guard, type HandleChange, type KnownHandle } from './block-writer';
import { casLoop, type Round } from './cas';
import { BlockClaimer } from './claim';
import { AddressOutsidePoolsError, NoUsablePoolError, PoolsExhaustedError, InvalidPoolError } from './errors';
import { addToHandle, isValidHandleId, removeFromHandle } from './handle';
import { readHostView, type HostView } from './host-view';
import { poolFromEntry, poolHolds, poolOf, rejectOverlap, selectPools, validatePoolSpec, type Pool } from './pool';
import { blockFromEntry, handleFromEntry, type Versioned } from './records';

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

const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

export class Ipam {
  private readonly writer: BlockWriter;
  private readonly claimer: BlockClaimer;
  private readonly views = new Map<string, HostView>();

  constructor(private readonly ds: Datastore) {
    this.writer = new BlockWriter(ds);
    this.claimer = new BlockClaimer(ds, this.writer);
  }

  // ---- allocation ----

  async autoAssign(request: AutoAssignRequest): Promise<{ ipv4: IpAddress[]; ipv6: IpAddress[] }> {
    validateOwner(request.handle, request.node);
    for (const [field, n] of [['num4', request.num4], ['num6', request.num6]] as const) {
      if (!Number.isInteger(n) || n < 0 || n > 4096) throw new InvalidInputError(field, `${n} must be a whole number from 0 to 4096`);
    }
    const attribute = attributeFor(request.handle, request.node, request.attributes);
    const ipv4 = await this.autoAssignVersion(4, request.num4, request.pools4, request.node, attribute);
    try {
      const ipv6 = await this.autoAssignVersion(6, request.num6, request.pools6, request.node, attribute);
      return { ipv4, ipv6 };
    } catch (err) {
      await this.release(ipv4).catch(() => undefined);
      throw err;
    }
  }

  private async autoAssignVersion(
    version: IpVersion,
    count: number,
    wantedPools: readonly string[] | undefined,
    node: string,
    attribute: AllocationAttribute,
  ): Promise<IpAddress[]> {
    if (count === 0) return [];
    const got: IpAddress[] = [];
    const handle = { known: 'absent' as KnownHandle };
    // Cached views and blocks make the common case one round trip; before claiming a new block
    // or giving up, look again at what etcd holds now (another process may have freed space).
    let fresh = false;
    try {
      return await casLoop('auto-assign', async (): Promise<Round<IpAddress[]>> => {
        const usedCache = this.views.has(`${node}/${version}`);
        const view = await this.view(node, version);
        const pools = selectPools(view.pools, version, wantedPools);
        if (pools.length === 0) throw new NoUsablePoolError(`no enabled IPv${version} pool exists; create one first`);
        const base = [guardOf(view.configKey, view.configRevision)];

        // 1. This host's own blocks.
        const affine = [...view.affinities.values()].filter((a) => a.state === 'confirmed' && pools.some((p) => poolHolds(p, a.cidr)));
        const cachedBlocks = affine.some((a) => this.writer.isCached(a.cidr));
        const blocks = await this.writer.blocks(affine.map((a) => a.cidr), { fresh });
        for (const affinity of affine) {
          const block = blocks.get(formatCidr(affinity.cidr));
          if (!block || block.value.affinity !== hostAffinity(node) || block.value.unallocated.length === 0) continue;
          const pool = pools.find((p) => poolHolds(p, affinity.cidr))!;
          const guards = [...base, poolGuard(pool), { key: affinity.key, expect: { modRevision: affinity.modRevision } }];
          const outcome = await this.allocateIn(block, count - got.length, attribute, handle, guards, view);
          if (outcome === 'conflict') return 'conflict';
          got.push(...outcome);
          if (got.length === count) return { done: got };
        }
        if (!fresh && (usedCache || cachedBlocks)) {
          fresh = true;
          this.views.delete(`${node}/${version}`);
          return 'again';
        }

        // 2. A new block for this host.
        const claim = await this.claimer.claim(view, pools);
        if (claim === 'conflict') {
          this.views.delete(`${node}/${version}`);
          return 'conflict';
        }
        if ('claimed' in claim) return 'again';

        // 3. Borrow from other hosts' blocks, unless affinity is strict.
        if (!view.config.strict_affinity) {
          for (const block of await this.borrowable(pools, node)) {
            const pool = pools.find((p) => poolHolds(p, block.value.cidr))!;
            const outcome = await this.allocateIn(block, count - got.length, attribute, handle, [...base, poolGuard(pool)], view);
            if (outcome === 'conflict') return 'conflict';
            got.push(...outcome);
            if (got.length === count) return { done: got };
          }
        }
        const reason = view.config.strict_affinity ? `${claim.none}, and strict affinity forbids borrowing` : claim.none;
        throw new PoolsExhaustedError(pools.map((p) => `${p.name} (${formatCidr(p.cidr)})`), reason);
      });
    } catch (err) {
      await this.release(got).catch(() => undefined);
      throw err;
    }
  }

  /** Takes up to `count` addresses from one block in one transaction with the handle. */
  private async allocateIn(
    block: Versioned<Block>,
    count: number,
    attribute: AllocationAttribute,
    handle: { known: KnownHandle },
    guards: readonly Guard[],
    view: HostView,
  ): Promise<IpAddress[] | 'conflict'> {
    const { block: after, addresses } = autoAssign(block.value, count, attribute);
    if (addresses.length === 0) return [];
    return this.commitAssignment(block, after, addresses, attribute.handle_id!, handle, guards, view);
  }

  private async commitAssignment(
    block: Versioned<Block> | 'absent',
    after: Block,
    addresses: IpAddress[],
    handleId: HandleId,
    handle: { known: KnownHandle },
    guards: readonly Guard[],
    view: HostView | undefined,
  ): Promise<IpAddress[] | 'conflict'> {
    const before = handle.known === 'absent' ? undefined : handle.known.value;
    const change = { id: handleId, before: handle.known, after: addToHandle(before, formatCidr(after.cidr), addresses.length) };
    const outcome = await this.writer.write(block, after, after.cidr, [change], guards);
    if (outcome.ok) {
      handle.known = { value: change.after, modRevision: outcome.revision };
      return addresses;
    }
    handle.known = outcome.handles.get(handleId)!;
    if (outcome.changedGuards && view) this.views.delete(`${view.node}/${view.version}`);
    return 'conflict';
  }

  /** Blocks of other hosts (or of none) in these pools with a free address. Lists every block: only reached when this host can claim nothing. */
  private async borrowable(pools: readonly Pool[], node: string): Promise<Versioned<Block>[]> {
    const version = pools[0]!.cidr.version;
    const entries = await this.ds.kv.list(this.ds.keys.blockPrefix(version));
    return entries
      .map((e) => blockFromEntry(e))
      .filter((b) => b.value.affinity !== hostAffinity(node) && b.value.unallocated.length > 0 && pools.some((p) => poolHolds(p, b.value.cidr)));
  }

  /** Allocates exactly `address` (as `docker run --ip` or a CNI `ips` request asks). */
  async assign(request: AssignRequest): Promise<void> {
    validateOwner(request.handle, request.node);
    const text = formatAddress(request.address);
    const attribute = attributeFor(request.handle, request.node, request.attributes);
    const handle = { known: 'absent' as KnownHandle };
    await casLoop(`assignment of ${text}`, async (): Promise<Round<void>> => {
      const view = await this.view(request.node, request.address.version);
      const candidates = request.pools?.length ? selectPools(view.pools, request.address.version, request.pools) : view.pools.filter((p) => !p.disabled);
      const pool = poolOf(candidates, request.address);
      if (!pool) throw new AddressOutsidePoolsError(text, request.pools?.length ? `of the pools ${request.pools.join(', ')}` : 'enabled IP pool');
      const cidr = enclosingCidr(request.address, pool.blockSize);
      const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
      if (!block) {
        // The block holding the address does not exist yet: claim exactly that one for this host.
        const claim = await this.claimer.claimSpecific(view, pool, cidr);
        if (claim === 'conflict') {
          this.views.delete(`${request.node}/${request.address.version}`);
          return 'conflict';
        }
        if ('none' in claim) throw new PoolsExhaustedError([formatCidr(cidr)], `cannot claim the block holding ${text}: ${claim.none}`);
        return 'again';
      }
      if (view.config.strict_affinity && block.value.affinity !== hostAffinity(request.node)) {
        throw new AddressOutsidePoolsError(text, `block of host ${request.node}: its block ${formatCidr(cidr)} belongs to ${block.value.affinity ?? 'no host'} and strict affinity is on`);
      }
      const after = assignAddress(block.value, request.address, attribute);
      const guards = [guardOf(view.configKey, view.configRevision), poolGuard(pool)];
      const outcome = await this.commitAssignment(block, after, [request.address], request.handle, handle, guards, view);
      return outcome === 'conflict' ? 'conflict' : { done: undefined };
    });
  }

  // ---- release ----

  /** Frees addresses; returns those that were not allocated (not an error: release is idempotent). */
  async release(addresses: readonly IpAddress[]): Promise<IpAddress[]> {
    const notAllocated: IpAddress[] = [];
    const byBlock = new Map<string, { cidr: Cidr; addresses: IpAddress[] }>();
    const pools = addresses.length > 0 ? await this.pools() : [];
    for (const address of addresses) {
      const cidr = await this.blockHolding(address, pools);
      if (!cidr) {
        notAllocated.push(address);
        continue;
      }
      const group = byBlock.get(formatCidr(cidr)) ?? { cidr, addresses: [] };
      group.addresses.push(address);
      byBlock.set(formatCidr(cidr), group);
    }
    for (const { cidr, addresses: inBlock } of byBlock.values()) {
      notAllocated.push(...(await this.releaseInBlock(cidr, (b) => releaseAddresses(b, inBlock))));
    }
    return notAllocated;
  }

  /** Frees every address of a handle and deletes the handle; 0 when it held nothing. */
  async releaseByHandle(handleId: HandleId): Promise<number> {
    if (!isValidHandleId(handleId)) throw new InvalidInputError('handle', `"${handleId}" is not a valid handle ID`);
    const handle = await this.writer.handle(handleId);
    if (handle === 'absent') return 0;
    let released = 0;
    for (const cidrText of Object.keys(handle.value.block)) {
      let cidr: Cidr;
      try {
        cidr = parseCidr(cidrText);
      } catch {
        throw new MalformedDataError(this.ds.keys.handle(handleId), `field "block" names "${cidrText}", which is not a block CIDR`);
      }
      released += await this.releaseHandleInBlock(cidr, handleId);
    }
    return released;
  }

  private async releaseHandleInBlock(cidr: Cidr, handleId: HandleId): Promise<number> {
    let count = 0;
    await this.releaseInBlock(cidr, (b) => {
      const release = releaseHandle(b, handleId);
      count = release.released.length;
      return release;
    }, handleId);
    return count;
  }

  /**
   * Applies a release to one block and the handles it touches, in one transaction. `ensureHandle`
   * is a handle whose entry for this block must go even if the block no longer holds any of its
   * addresses (a stale handle count is a leak that check would report).
   */
  private async releaseInBlock(cidr: Cidr, apply: (block: Block) => Release, ensureHandle?: HandleId): Promise<IpAddress[]> {
    const cidrText = formatCidr(cidr);
    return casLoop(`release in block ${cidrText}`, async (): Promise<Round<IpAddress[]>> => {
      const block = (await this.writer.blocks([cidr], { fresh: true })).get(cidrText);
      // A block that does not exist holds nothing: release against an empty stand-in.
      const release = apply(block?.value ?? newBlock(cidr, null));
      const touched = new Map(release.releasedByHandle);
      if (ensureHandle && !touched.has(ensureHandle)) touched.set(ensureHandle, 0);
      if (touched.size === 0) return { done: [...release.notAllocated] };

      const entries = await this.ds.kv.readMany([...touched.keys()].map((id) => ({ key: this.ds.keys.handle(id) })));
      const changes: HandleChange[] = [];
      [...touched.entries()].forEach(([id, count], i) => {
        const entry = entries[i]![0];
        if (!entry) return;
        const known = handleFromEntry(entry);
        const drop = count === 0 ? (known.value.block[cidrText] ?? 0) : count;
        changes.push({ id, before: known, after: removeFromHandle(known.value, cidrText, drop) });
      });
      const outcome = block ? await this.writer.write(block, release.block, cidr, changes) : await this.writer.writeHandles(changes);
      return outcome.ok ? { done: [...release.notAllocated] } : 'conflict';
    });
  }

  /** Records more about an allocated address's owner; false when the address is not allocated. */
  async annotate(address: IpAddress, facts: Readonly<Record<string, string>>): Promise<boolean> {
    const cidr = await this.blockHolding(address, await this.pools());
    if (!cidr) return false;
    return casLoop(`annotation of ${formatAddress(address)}`, async (): Promise<Round<boolean>> => {
      const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
      if (!block || !attributeOf(block.value, address)) return { done: false };
      const outcome = await this.writer.write(block, annotateAddress(block.value, address, facts), cidr, []);
      return outcome.ok ? { done: true } : 'conflict';
    });
  }

  // ---- queries ----

  async ownerOf(address: IpAddress): Promise<AddressOwner | undefined> {
    const cidr = await this.blockHolding(address, await this.pools());
    if (!cidr) return undefined;
    const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
    const attribute = block && attributeOf(block.value, address);
    if (!attribute) return undefined;
    return { address, block: cidr, handle: attribute.handle_id, attributes: attribute.secondary ?? {} };
  }

  /** The addresses a handle holds now (a repeat ADD answers with these instead of allocating). */
  async handleAddresses(handleId: HandleId): Promise<IpAddress[]> {
    return (await this.handleHoldings([handleId])).get(handleId)?.addresses ?? [];
  }

  /**
   * The handles whose ID starts with `prefix`, each with its addresses and the nodes recorded as
   * their owners (for garbage collection, which must touch only this host's allocations).
   */
  async handlesWithPrefix(prefix: string): Promise<Map<HandleId, { addresses: IpAddress[]; nodes: Set<string> }>> {
    const base = this.ds.keys.handlePrefix();
    const entries = await this.ds.kv.list(`${base}${prefix}`, { keysOnly: true });
    return this.handleHoldings(entries.map((e) => e.key.slice(base.length)));
  }

  private async handleHoldings(ids: readonly HandleId[]) {
    const out = new Map<HandleId, { addresses: IpAddress[]; nodes: Set<string> }>();
    if (ids.length === 0) return out;
    const handleEntries = await this.ds.kv.readMany(ids.map((id) => ({ key: this.ds.keys.handle(id) })));
    const blockCidrs = new Map<string, Cidr>();
    const handles = ids.map((id, i) => {
      const entry = handleEntries[i]![0];
      const cidrs = entry ? Object.keys(handleFromEntry(entry).value.block) : [];
      for (const text of cidrs) if (!blockCidrs.has(text)) blockCidrs.set(text, parseCidr(text));
      return { id, cidrs };
    });
    const blocks = await this.writer.blocks([...blockCidrs.values()], { fresh: true });
    for (const { id, cidrs } of handles) {
      if (cidrs.length === 0) continue;
      const holding = { addresses: [] as IpAddress[], nodes: new Set<string>() };
      for (const text of cidrs) {
        const block = blocks.get(text);
        if (!block) continue;
        for (const { address, attribute } of allocatedAddresses(block.value)) {
          if (attribute?.handle_id !== id) continue;
          holding.addresses.push(address);
          if (attribute.secondary?.node) holding.nodes.add(attribute.secondary.node);
        }
      }
      out.set(id, holding);
    }
    return out;
  }

  async listBlocks(): Promise<BlockUsage[]> {
    const [v4, v6] = await this.ds.kv.readMany([{ prefix: this.ds.keys.blockPrefix(4) }, { prefix: this.ds.keys.blockPrefix(6) }]);
    return [...v4!, ...v6!].map((e) => {
      const { value } = blockFromEntry(e);
      return { cidr: value.cidr, affinity: value.affinity, size: value.allocations.length, inUse: inUseCount(value) };
    });
  }

  /** Every allocated address of a block with its owner. */
  async addressesIn(cidr: Cidr): Promise<AddressOwner[]> {
    const block = (await this.writer.blocks([cidr], { fresh: true })).get(formatCidr(cidr));
    if (!block) return [];
    return allocatedAddresses(block.value).map(({ address, attribute }) => ({
      address,
      block: cidr,
      handle: attribute?.handle_id ?? null,
      attributes: attribute?.secondary ?? {},
    }));
  }

  /**
   * Gives up a host's claim on its empty blocks (deleting block and affinity together), as
   * asked by an operator or a host going away; blocks still in use are kept. Returns the
   * released block CIDRs.
   */
  async releaseEmptyBlockAffinities(node: string): Promise<Cidr[]> {
    validateNode(node);
    const released: Cidr[] = [];
    for (const version of [4, 6] as const) {
      for (const entry of await this.ds.kv.list(this.ds.keys.hostAffinityPrefix(node, version))) {
        const named = this.ds.keys.affinityOf(entry.key);
        if (!named) continue;
        const block = (await this.writer.blocks([named.cidr], { fresh: true })).get(formatCidr(named.cidr));
        if (block && (!isEmpty(block.value) || block.value.affinity !== hostAffinity(node))) continue;
        const outcome = block
          ? await this.writer.write(block, null, named.cidr, [], [], [{ key: entry.key, modRevision: entry.modRevision }])
          : await this.ds.kv.txn([{ key: entry.key, delete: true, expect: { modRevision: entry.modRevision } }]);
        if (outcome.ok) released.push(named.cidr);
      }
      this.views.delete(`${node}/${version}`);
    }
    return released;
  }

  // ---- pools and config ----

  async pools(): Promise<Pool[]> {
    return (await this.ds.kv.list(this.ds.keys.resourcePrefix('IPPool'))).map(poolFromEntry);
  }

  /** Validates and creates a pool; overlapping or malformed pools are refused. */
  async createPool(name: string, spec: IPPoolSpec): Promise<Resource<'IPPool'>> {
    const { cidr, spec: full } = validatePoolSpec(name, spec);
    rejectOverlap(name, cidr, await this.pools());
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

  // ---- helpers ----

  private async view(node: string, version: IpVersion): Promise<HostView> {
    const key = `${node}/${version}`;
    let view = this.views.get(key);
    if (!view) {
      view = await readHostView(this.ds, node, version);
      this.views.set(key, view);
    }
    return view;
  }

  /** The block an address falls in: by its pool's block size, else by searching the blocks. */
  private async blockHolding(address: IpAddress, pools: readonly Pool[]): Promise<Cidr | undefined> {
    const pool = poolOf(pools, address);
    if (pool) return enclosingCidr(address, pool.blockSize);
    const keys = await this.ds.kv.list(this.ds.keys.blockPrefix(address.version), { keysOnly: true });
    for (const entry of keys) {
      const cidr = this.ds.keys.blockCidrOf(entry.key);
      if (cidr && enclosingCidr(address, cidr.prefix).network === cidr.network) return cidr;
    }
    return undefined;
  }
}

function poolGuard(pool: Pool): Guard {
  return { key: pool.key, expect: { modRevision: pool.modRevision } };
}

function validateOwner(handle: string, node: string): void {
  if (!isValidHandleId(handle)) throw new InvalidInputError('handle', `"${handle}" must be 1-512 characters with no "/" or white space`);
  validateNode(node);
}

function validateNode(node: string): void {
  if (typeof node !== 'string' || !NODE_NAME.test(node)) throw new InvalidInputError('node', `"${node}" is not a valid host name`);
}

function attributeFor(handle: HandleId, node: string, extra: Readonly<Record<string, string>> = {}): AllocationAttribute {
  return { handle_id: handle, secondary: { ...extra, node, timestamp: new Date().toISOString() } };
}

