/**
 * Gives back this host's empty blocks: a burst can leave a host holding blocks it no longer needs,
 * and a pool must not run dry on empty blocks held by hosts. One empty block is kept as the spare
 * for the next workloads; the others go once they have stayed empty for the whole delay, each with
 * its affinity in one transaction that fails if the block gained an address meanwhile.
 */
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { formatCidr } from '../shared/net';
import { Periodic } from './periodic';

export interface BlockReclaimerSettings {
  readonly node: string;
  /** How long a block must stay empty before it is released; 0 turns the job off. */
  readonly delayMs: number;
  /** Empty blocks kept in any case. */
  readonly spare: number;
}

/** How often the host's blocks are looked at, at most. */
const MAX_INTERVAL_MS = 60_000;

export class BlockReclaimer {
  /** Block CIDR -> when it was first seen empty. */
  private readonly emptySince = new Map<string, number>();
  private readonly periodic: Periodic;

  constructor(
    private readonly ipam: () => Promise<Ipam>,
    private readonly settings: BlockReclaimerSettings,
    private readonly log: Logger,
  ) {
    const interval = settings.delayMs <= 0 ? 0 : Math.min(MAX_INTERVAL_MS, Math.max(1000, settings.delayMs / 2));
    this.periodic = new Periodic(() => this.reclaim(), interval, log, 'releasing empty blocks failed; will retry');
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One pass; returns the blocks released. */
  async reclaim(now = Date.now()): Promise<string[]> {
    const ipam = await this.ipam();
    const empty = (await ipam.emptyBlocks(this.settings.node)).map((cidr) => ({ cidr, key: formatCidr(cidr) }));
    const seen = new Set(empty.map((e) => e.key));
    for (const key of this.emptySince.keys()) if (!seen.has(key)) this.emptySince.delete(key);
    for (const { key } of empty) if (!this.emptySince.has(key)) this.emptySince.set(key, now);
    // The spare is the block that became empty last: the likeliest to be filled again soon.
    const byAge = [...empty].sort((a, b) => this.emptySince.get(a.key)! - this.emptySince.get(b.key)!);
    const released: string[] = [];
    for (const { cidr, key } of byAge.slice(0, Math.max(0, byAge.length - this.settings.spare))) {
      if (now - this.emptySince.get(key)! < this.settings.delayMs) continue;
      if (await ipam.releaseEmptyBlock(this.settings.node, cidr)) {
        released.push(key);
        this.emptySince.delete(key);
      }
    }
    if (released.length > 0) this.log.info('released empty blocks', { blocks: released.join(',') });
    return released;
  }
}
