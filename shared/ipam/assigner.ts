/**
 * Automatic assignment for a batch of requests of one host: the host's blocks are read once (from
 * the cache in steady state), every request is placed by the pure planner, and one transaction
 * writes the blocks and every request's handle, guarded by the pool, affinity and IPAM config
 * revisions it relied on, with each request's companion record (its workload's endpoint) when it
 * has one. New blocks are claimed one at a time, only when the batch does not fit, so a burst
 * claims no more blocks than it fills. A single request is simply a batch of one.
 */
import { decodeEach, type Datastore } from '../datastore';
import type { IpAddress, IpVersion } from '../net/address';
import { cidrContains, formatCidr } from '../net/cidr';
import { planAssignments, type Candidate, type Demand, type Plan } from './batch';
import { assignableCount, hostAffinity, type Block, type HandleId } from './block';
import { guardOf, type BlockChange, type BlockWriter, type Guard, type HandleChange, type KnownHandle } from './block-writer';
import { casLoop, type Round } from './cas';
import type { BlockClaimer } from './claim';
import { NoUsablePoolError, PoolsExhaustedError } from './errors';
import { addToHandle } from './handle';
import type { HostView, HostViews } from './host-view';
import { poolHolds, reservedOrdinals, selectPools, type Pool } from './pool';
import { blockFromEntry, type Versioned } from './records';
import type { Served } from './group-commit';

export type PoolChoice = Readonly<Partial<Record<IpVersion, readonly string[]>>>;

/**
 * Blocks one transaction may write: with their affinities, a batch's handles and companion
 * records, the pools and the config (24 + 24 + 32 + 32 + a few) it stays under etcd's 128 keys.
 */
export const MAX_BLOCKS_PER_TXN = 24;
/** Requests served by one batch (one handle and one companion each at most). */
export const MAX_BATCH = 32;

/** What a request got: its addresses, and whether its companion record was written with them. */
export interface Assigned {
  readonly addresses: IpAddress[];
  readonly companionWritten: boolean;
}

interface VersionState {
  readonly view: HostView;
  readonly pools: Pool[];
  readonly cached: boolean;
  /** Candidate blocks in order: the host's own, then any borrowed. */
  candidates: { block: Versioned<Block>; pool: Pool; own: boolean }[];
}

interface RoundResult {
  readonly placed: ReadonlyMap<number, Assigned>;
  readonly failed: ReadonlyMap<number, unknown>;
  readonly deferred: readonly number[];
}

export class Assigner {
  constructor(
    private readonly ds: Datastore,
    private readonly writer: BlockWriter,
    private readonly claimer: BlockClaimer,
    private readonly views: HostViews,
  ) {}

  /** Serves every demand (all of one node and pool choice); each gets all its addresses or an error. */
  async assign(node: string, pools: PoolChoice, demands: readonly Demand[]): Promise<Served<Assigned>[]> {
    const answers: Served<Assigned>[] = new Array(demands.length);
    const handles = new Map<HandleId, KnownHandle>();
    let pending = demands.map((_, i) => i);
    while (pending.length > 0) {
      const batch = pending;
      let result: RoundResult;
      try {
        result = await this.serveOnce(node, pools, batch.map((i) => demands[i]!), handles);
      } catch (error) {
        for (const i of batch) answers[i] = { ok: false, error };
        break;
      }
      for (const [local, assigned] of result.placed) answers[batch[local]!] = { ok: true, value: assigned };
      for (const [local, error] of result.failed) answers[batch[local]!] = { ok: false, error };
      pending = result.deferred.map((local) => batch[local]!);
      if (result.placed.size === 0 && result.failed.size === 0) {
        // Not even the first request fits one transaction: it asks for more blocks than that.
        const error = new PoolsExhaustedError([], `one request may take addresses from at most ${MAX_BLOCKS_PER_TXN} blocks`);
        answers[pending.shift()!] = { ok: false, error };
      }
    }
    return answers;
  }

  /** One transaction's worth: places what fits, claiming or borrowing blocks when needed. */
  private serveOnce(node: string, choice: PoolChoice, demands: readonly Demand[], handles: Map<HandleId, KnownHandle>): Promise<RoundResult> {
    const versions = ([4, 6] as const).filter((v) => demands.some((d) => d.count[v] > 0));
    const failed = new Map<number, unknown>();
    // Cached views and blocks make the common case one round trip; before claiming a block or
    // giving up, look again at what etcd holds now (another process may have freed space).
    let fresh = false;
    /** Versions in which this host can claim nothing, and why. */
    const noClaim = new Map<IpVersion, string>();
    const exhausted = new Map<IpVersion, string>();
    /** Requests whose companion found its key changed: they go ahead without it. */
    const withoutCompanion = new Set<number>();
    return casLoop('auto-assign', async (): Promise<Round<RoundResult>> => {
      const states = new Map<IpVersion, VersionState>();
      for (const version of versions) states.set(version, await this.state(node, version, choice[version], fresh, noClaim.has(version)));
      const live = demands.map((d, i) => ({ d, i })).filter(({ i }) => !failed.has(i));
      const plan = this.plan(live.map(({ d }) => d), states);

      const shortVersions = plan.shortVersions.filter((v) => !exhausted.has(v));
      if (shortVersions.length > 0) {
        if (!fresh && [...states.values()].some((s) => s.cached)) {
          fresh = true;
          this.views.forget(node);
          return 'again';
        }
        for (const version of shortVersions) {
          const state = states.get(version)!;
          const none = noClaim.get(version);
          if (none !== undefined) {
            // Borrowed blocks were candidates in this round, and still not enough.
            exhausted.set(version, `${none}, and no other host's block has room`);
            continue;
          }
          const claim = await this.claimer.claim(state.view, state.pools);
          if (claim === 'conflict') {
            this.views.forget(node, version);
            return 'conflict';
          }
          if ('claimed' in claim) return 'again';
          if (state.view.config.strict_affinity) exhausted.set(version, `${claim.none}, and strict affinity forbids borrowing`);
          else noClaim.set(version, claim.none);
        }
        if (shortVersions.some((v) => noClaim.has(v) && !exhausted.has(v))) return 'again';
      }
      // What still does not fit, after claims and borrowing, fails; the rest goes ahead.
      if (plan.short.length > 0) {
        for (const s of plan.short) {
          const version = plan.shortVersions.find((v) => live[s]!.d.count[v] > 0 && exhausted.has(v)) ?? versions[0]!;
          const pools = states.get(version)!.pools;
          failed.set(live[s]!.i, new PoolsExhaustedError(pools.map((p) => `${p.name} (${formatCidr(p.cidr)})`), exhausted.get(version) ?? 'no block has room'));
        }
        return 'again';
      }
      const companions = live.map(({ d, i }) => (withoutCompanion.has(i) ? undefined : d.companion));
      const outcome = await this.commit(node, plan, live.map(({ d }) => d), companions, states, handles);
      if (outcome === 'conflict') return 'conflict';
      if ('lost' in outcome) {
        for (const local of outcome.lost) withoutCompanion.add(live[local]!.i);
        return 'again';
      }
      const placed = new Map<number, Assigned>();
      for (const [local, addresses] of plan.placed) placed.set(live[local]!.i, { addresses, companionWritten: outcome.written.has(local) });
      return { done: { placed, failed, deferred: plan.deferred.map((local) => live[local]!.i) } };
    });
  }

  private plan(demands: readonly Demand[], states: ReadonlyMap<IpVersion, VersionState>): Plan {
    const candidates = (version: IpVersion): Candidate[] =>
      (states.get(version)?.candidates ?? []).map(({ block, pool }) => ({ block: block.value, reserved: reservedOrdinals(pool, block.value.cidr) }));
    return planAssignments(demands, { 4: candidates(4), 6: candidates(6) }, MAX_BLOCKS_PER_TXN);
  }

  private state(node: string, version: IpVersion, wanted: readonly string[] | undefined, fresh: boolean, borrow: boolean): Promise<VersionState> {
    return this.views.use(node, version, (view, cached) => this.stateOf(view, cached, node, version, wanted, fresh, borrow));
  }

  private async stateOf(view: HostView, cached: boolean, node: string, version: IpVersion, wanted: readonly string[] | undefined, fresh: boolean, borrow: boolean): Promise<VersionState> {
    const pools = selectPools(view.pools, version, wanted);
    if (pools.length === 0) throw new NoUsablePoolError(`no enabled IPv${version} pool exists; create one first`);
    const affine = [...view.affinities.values()].filter((a) => a.state === 'confirmed' && pools.some((p) => poolHolds(p, a.cidr)));
    const cachedBlocks = !fresh && affine.some((a) => this.writer.isCached(a.cidr));
    // A block of this host that cannot be read is no candidate; the others are.
    const blocks = await this.writer.blocks(affine.map((a) => a.cidr), { fresh, skipMalformed: true });
    const candidates: VersionState['candidates'] = [];
    for (const affinity of affine) {
      const block = blocks.get(formatCidr(affinity.cidr));
      if (block && block.value.affinity === hostAffinity(node)) candidates.push({ block, pool: pools.find((p) => poolHolds(p, affinity.cidr))!, own: true });
    }
    if (borrow) candidates.push(...(await this.borrowable(node, pools)));
    return { view, pools, cached: cached || cachedBlocks, candidates };
  }

  /**
   * Blocks of other hosts (or of none) in these pools with room, read page by page until enough
   * are found for one transaction. Only reached when this host can claim nothing.
   */
  private async borrowable(node: string, pools: readonly Pool[]): Promise<VersionState['candidates']> {
    const found: VersionState['candidates'] = [];
    for await (const page of this.ds.kv.pages(this.ds.keys.blockPrefix(pools[0]!.cidr.version), { pageSize: 100 })) {
      for (const block of decodeEach(page, (entry) => blockFromEntry(entry))) {
        const pool = pools.find((p) => poolHolds(p, block.value.cidr));
        if (!pool || block.value.affinity === hostAffinity(node) || assignableCount(block.value, reservedOrdinals(pool, block.value.cidr)) === 0) continue;
        found.push({ block, pool, own: false });
        if (found.length >= MAX_BLOCKS_PER_TXN) return found;
      }
    }
    return found;
  }

  /**
   * Writes the plan in one transaction, with the companions of the placed requests; on a lost race
   * the caches hold what won. `written`: the requests whose companion went with it; `lost`: those
   * whose companion's key was not as expected (the plan is then written again without them).
   */
  private async commit(
    node: string,
    plan: Plan,
    demands: readonly Demand[],
    companions: readonly (Demand['companion'] | undefined)[],
    states: ReadonlyMap<IpVersion, VersionState>,
    handles: Map<HandleId, KnownHandle>,
  ): Promise<{ written: ReadonlySet<number> } | { lost: readonly number[] } | 'conflict'> {
    const blocks: BlockChange[] = [];
    const guards: Guard[] = [];
    const guarded = new Set<string>();
    const guard = (g: Guard) => {
      if (guarded.has(g.key)) return;
      guarded.add(g.key);
      guards.push(g);
    };
    for (const state of states.values()) {
      guard(guardOf(state.view.configKey, state.view.configRevision));
      for (const { block, pool, own } of state.candidates) {
        const after = plan.blocks.get(formatCidr(block.value.cidr));
        if (!after) continue;
        blocks.push({ cidr: block.value.cidr, before: block, after });
        guard({ key: pool.key, expect: { modRevision: pool.modRevision } });
        const affinity = own ? state.view.affinities.get(formatCidr(block.value.cidr)) : undefined;
        if (affinity) guard({ key: affinity.key, expect: { modRevision: affinity.modRevision } });
      }
    }
    const companionKeys = new Map<string, number>();
    for (const [local, addresses] of plan.placed) {
      let write: ReturnType<NonNullable<Demand['companion']>> | undefined;
      try {
        write = companions[local]?.(addresses);
      } catch {
        // A companion that cannot be made is its request's alone: written apart, it fails there.
        continue;
      }
      // (Two requests for one record in a batch cannot both write it: the second goes apart.)
      if (!write || guarded.has(write.key)) continue;
      guard({ key: write.key, expect: write.expect, put: write.put });
      companionKeys.set(write.key, local);
    }
    const changes = handleChanges(plan, demands, handles);
    const outcome = await this.writer.write({ blocks, handles: changes, guards });
    if (outcome.ok) {
      for (const change of changes) handles.set(change.id, { value: change.after!, modRevision: outcome.revision });
      return { written: new Set(companionKeys.values()) };
    }
    for (const [id, known] of outcome.handles) handles.set(id, known);
    const lost = [...outcome.mismatched].filter((key) => companionKeys.has(key));
    if (outcome.mismatched.size > lost.length) this.views.forget(node);
    return lost.length > 0 ? { lost: lost.map((key) => companionKeys.get(key)!) } : 'conflict';
  }
}

/** Each placed request's handle gains its addresses, per block; requests sharing a handle add up. */
function handleChanges(plan: Plan, demands: readonly Demand[], handles: ReadonlyMap<HandleId, KnownHandle>): HandleChange[] {
  const counts = new Map<HandleId, Map<string, number>>();
  for (const [index, addresses] of plan.placed) {
    const id = demands[index]!.attribute.handle_id!;
    const perBlock = counts.get(id) ?? new Map<string, number>();
    for (const address of addresses) {
      const block = [...plan.blocks.values()].find((b) => cidrContains(b.cidr, address))!;
      const key = formatCidr(block.cidr);
      perBlock.set(key, (perBlock.get(key) ?? 0) + 1);
    }
    counts.set(id, perBlock);
  }
  return [...counts].map(([id, perBlock]) => {
    const before = handles.get(id) ?? 'absent';
    let after = before === 'absent' ? undefined : before.value;
    for (const [cidr, n] of perBlock) after = addToHandle(after, cidr, n);
    return { id, before, after };
  });
}

