/**
 * Claiming a new block for a host, in two phases as Calico does: an affinity `pending`, then the
 * block created with `affinity: host:<node>` in the same transaction that marks it `confirmed`, so
 * no reader ever sees a block of ours whose affinity is still pending. A crash between the phases
 * leaves a pending affinity that the same host finishes (or drops) on its next claim.
 */
import { decodeEach, encodeAffinity, type Datastore } from '../datastore';
import { ADDRESS_BITS } from '../net/address';
import { formatCidr, type Cidr } from '../net/cidr';
import { hostAffinity, isEmpty, newBlock, type Block } from './block';
import { guardOf, type BlockWriter } from './block-writer';
import { candidateIndexes, firstFreeIndex, randomBelow } from './candidates';
import type { HostAffinity, HostView } from './host-view';
import { blockAt, blockCount, poolHolds, type Pool } from './pool';
import { blockFromEntry, type Versioned } from './records';

export type ClaimOutcome =
  | { readonly claimed: Versioned<Block> }
  /** Nothing can be claimed, and why (for the exhaustion error). */
  | { readonly none: string }
  | 'conflict';

/** Random candidates read per round trip, and rounds before listing the pool's existing blocks. */
const CANDIDATES_PER_READ = 16;
const RANDOM_READS = 2;

export class BlockClaimer {
  constructor(
    private readonly ds: Datastore,
    private readonly writer: BlockWriter,
  ) {}

  async claim(view: HostView, pools: readonly Pool[]): Promise<ClaimOutcome> {
    if (!view.config.auto_allocate_blocks) return { none: 'auto_allocate_blocks is off in the IPAM config' };
    const max = view.config.maxBlocksPerHost;
    if (max > 0 && view.affinities.size >= max) return { none: `host ${view.node} already has maxBlocksPerHost (${max}) blocks` };

    for (const pool of pools) {
      const pending = [...view.affinities.values()].find((a) => a.state === 'pending' && poolHolds(pool, a.cidr));
      if (pending) return this.finishPending(view, pool, pending);
      const cidr = await this.findFreeBlock(pool);
      if (cidr) return this.claimCidr(view, pool, cidr);
    }
    // Every block is claimed: empty blocks other hosts hold must not exhaust the pool. Take one back.
    for (const pool of pools) {
      const cidr = await this.reclaimEmptyBlock(view.node, pool);
      if (cidr) return this.claimCidr(view, pool, cidr);
    }
    return { none: 'every block of these pools is claimed by a host' };
  }

  /** Claims the given block (the one holding an address asked for by name). */
  async claimSpecific(view: HostView, pool: Pool, cidr: Cidr): Promise<ClaimOutcome> {
    const mine = view.affinities.get(formatCidr(cidr));
    if (mine?.state === 'pending') return this.finishPending(view, pool, mine);
    return this.claimCidr(view, pool, cidr);
  }

  private async findFreeBlock(pool: Pool): Promise<Cidr | undefined> {
    const total = blockCount(pool);
    for (let read = 0; read < RANDOM_READS; read++) {
      const cidrs = candidateIndexes(total, CANDIDATES_PER_READ).map((i) => blockAt(pool, i));
      const entries = await this.ds.kv.readMany(cidrs.map((c) => ({ key: this.ds.keys.block(c) })));
      const free = cidrs.find((_, i) => entries[i]!.length === 0);
      if (free) return free;
      if (total <= BigInt(CANDIDATES_PER_READ)) return undefined;
    }
    // Nearly full: one keys-only listing of this version's blocks finds the gaps.
    const taken = new Set<bigint>();
    const shift = BigInt(ADDRESS_BITS[pool.cidr.version] - pool.blockSize);
    for (const entry of await this.ds.kv.list(this.ds.keys.blockPrefix(pool.cidr.version), { keysOnly: true })) {
      const cidr = this.ds.keys.blockCidrOf(entry.key);
      if (cidr && poolHolds(pool, cidr)) taken.add((cidr.network - pool.cidr.network) >> shift);
    }
    const index = firstFreeIndex(total, taken, randomBelow(total));
    return index === undefined ? undefined : blockAt(pool, index);
  }

  /**
   * Deletes an empty block of another host (or of none) with its affinity, in one transaction
   * guarded by the block's revision: a block that gained an address meanwhile stays. Read page by
   * page; only reached when a pool has no unclaimed block left.
   */
  private async reclaimEmptyBlock(node: string, pool: Pool): Promise<Cidr | undefined> {
    for await (const page of this.ds.kv.pages(this.ds.keys.blockPrefix(pool.cidr.version), { pageSize: 100 })) {
      for (const [entry, block] of decodeEach(page, (entry) => [entry, blockFromEntry(entry)] as const)) {
        const { cidr, affinity } = block.value;
        if (!poolHolds(pool, cidr) || affinity === hostAffinity(node) || !isEmpty(block.value)) continue;
        const holder = affinity?.startsWith('host:') ? affinity.slice('host:'.length) : undefined;
        const outcome = await this.ds.kv.txn([
          { key: entry.key, delete: true, expect: { modRevision: block.modRevision } },
          ...(holder ? [{ key: this.ds.keys.affinity(holder, cidr), delete: true as const }] : []),
        ]);
        if (outcome.ok) {
          this.writer.remember(entry.key, undefined, cidr);
          return cidr;
        }
      }
    }
    return undefined;
  }

  private async claimCidr(view: HostView, pool: Pool, cidr: Cidr): Promise<ClaimOutcome> {
    const key = this.ds.keys.affinity(view.node, cidr);
    const pending = await this.ds.kv.txn([
      { key, put: encodeAffinity({ state: 'pending', deleted: false }), expect: { absent: true } },
      { key: pool.key, guard: { modRevision: pool.modRevision } },
      { key: view.configKey, guard: guardOf(view.configKey, view.configRevision).expect },
    ]);
    if (!pending.ok) return 'conflict';
    return this.createBlock(view, pool, { cidr, state: 'pending', key, modRevision: pending.revision });
  }

  /** Phase two: create the block and confirm the affinity in one transaction. */
  private async createBlock(view: HostView, pool: Pool, affinity: HostAffinity): Promise<ClaimOutcome> {
    const block = newBlock(affinity.cidr, view.node, view.config.strict_affinity);
    const written = await this.writer.write({
      blocks: [{ cidr: affinity.cidr, before: 'absent', after: block }],
      guards: [
        { key: pool.key, expect: { modRevision: pool.modRevision } },
        { key: affinity.key, expect: { modRevision: affinity.modRevision }, put: encodeAffinity({ state: 'confirmed', deleted: false }) },
      ],
    });
    if (!written.ok) {
      await this.dropAffinity(view, affinity);
      return 'conflict';
    }
    view.affinities.set(formatCidr(affinity.cidr), { ...affinity, state: 'confirmed', modRevision: written.revision });
    return { claimed: (await this.writer.blocks([affinity.cidr])).get(formatCidr(affinity.cidr))! };
  }

  /** A pending affinity of ours from an interrupted claim: finish it, or drop it if the block went to another host. */
  private async finishPending(view: HostView, pool: Pool, affinity: HostAffinity): Promise<ClaimOutcome> {
    const entry = await this.ds.kv.get(this.ds.keys.block(affinity.cidr));
    if (!entry) return this.createBlock(view, pool, affinity);
    const block = blockFromEntry(entry, affinity.cidr);
    if (block.value.affinity !== `host:${view.node}`) {
      await this.dropAffinity(view, affinity);
      return 'conflict';
    }
    const confirmed = await this.ds.kv.txn([
      { key: affinity.key, put: encodeAffinity({ state: 'confirmed', deleted: false }), expect: { modRevision: affinity.modRevision } },
    ]);
    if (!confirmed.ok) return 'conflict';
    view.affinities.set(formatCidr(affinity.cidr), { ...affinity, state: 'confirmed', modRevision: confirmed.revision });
    return { claimed: block };
  }

  private async dropAffinity(view: HostView, affinity: HostAffinity): Promise<void> {
    await this.ds.kv.txn([{ key: affinity.key, delete: true, expect: { modRevision: affinity.modRevision } }]);
    view.affinities.delete(formatCidr(affinity.cidr));
  }
}

