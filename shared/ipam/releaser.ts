/**
 * Releases for a batch of requests: the handles and blocks they touch are read once, every
 * release is applied by the pure block functions, and one transaction writes the blocks and the
 * handle records, guarded by the revisions read. Only what the owner test accepts is freed: an
 * address of another owner stays where it is and is reported. Handle records are recounted from
 * the blocks read, so a stale count (a crash between two writes of an older release) heals.
 */
import { MalformedDataError, type Datastore, type HandleRecord } from '../datastore';
import type { IpAddress } from '../net/address';
import { enclosingCidr, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { anyOwner, ordinalsOfHandle, releaseAddresses, releaseHandle, type Block, type HandleId, type OwnerTest } from './block';
import type { BlockChange, BlockWriter, HandleChange } from './block-writer';
import { casLoop, type Round } from './cas';
import { MAX_BLOCKS_PER_TXN } from './assigner';
import type { Served } from './group-commit';
import { poolOf, type Pool } from './pool';
import { handleFromEntry, type Versioned } from './records';

export type ReleaseJob =
  /** Every address of a handle (that `owns` accepts: a legacy handle may be shared). */
  | { readonly handle: HandleId; readonly owns?: OwnerTest }
  /** These addresses, where `owns` accepts their owner. */
  | { readonly addresses: readonly IpAddress[]; readonly owns: OwnerTest };

export interface Released {
  readonly released: IpAddress[];
  readonly notAllocated: IpAddress[];
  /** Allocated to another owner: left alone. */
  readonly notOwned: IpAddress[];
}

interface Prepared {
  readonly job: ReleaseJob;
  /** The blocks the job touches. */
  readonly cidrs: Cidr[];
}

export class Releaser {
  constructor(
    private readonly ds: Datastore,
    private readonly writer: BlockWriter,
    private readonly pools: () => Promise<Pool[]>,
  ) {}

  async release(jobs: readonly ReleaseJob[]): Promise<Served<Released>[]> {
    const answers: Served<Released>[] = new Array(jobs.length);
    let pending = jobs.map((_, i) => i);
    while (pending.length > 0) {
      const batch = pending;
      try {
        const { results, deferred } = await this.releaseOnce(batch.map((i) => jobs[i]!));
        results.forEach((result, local) => {
          if (result) answers[batch[local]!] = result;
        });
        pending = deferred.map((local) => batch[local]!);
      } catch (error) {
        for (const i of batch) answers[i] = { ok: false, error };
        break;
      }
    }
    return answers;
  }

  /** As many jobs as one transaction carries; the rest are deferred to the next. */
  private releaseOnce(jobs: readonly ReleaseJob[]): Promise<{ results: (Served<Released> | undefined)[]; deferred: number[] }> {
    return casLoop('release', async (): Promise<Round<{ results: (Served<Released> | undefined)[]; deferred: number[] }>> => {
      const results: (Served<Released> | undefined)[] = new Array(jobs.length);
      const records = await this.handleRecords(jobs.flatMap((j) => ('handle' in j ? [j.handle] : [])));
      const pools = jobs.some((j) => 'addresses' in j) ? await this.pools() : [];

      // Which blocks each job touches; jobs beyond what one transaction may write wait.
      const prepared: (Prepared | undefined)[] = [];
      const cidrs = new Map<string, Cidr>();
      const deferred: number[] = [];
      for (const [i, job] of jobs.entries()) {
        let touches: Cidr[];
        try {
          touches = 'handle' in job ? this.blocksOfHandle(job.handle, records.get(job.handle)) : await this.blocksOfAddresses(job.addresses, pools);
        } catch (error) {
          results[i] = { ok: false, error };
          prepared.push(undefined);
          continue;
        }
        const needed = new Set([...cidrs.keys(), ...touches.map(formatCidr)]);
        if (i > 0 && (deferred.length > 0 || needed.size > MAX_BLOCKS_PER_TXN || prepared.length >= MAX_BLOCKS_PER_TXN)) {
          deferred.push(i);
          prepared.push(undefined);
          continue;
        }
        for (const cidr of touches) cidrs.set(formatCidr(cidr), cidr);
        prepared.push({ job, cidrs: touches });
      }

      const read = await this.writer.blocks([...cidrs.values()]);
      const current = new Map<string, Block>();
      for (const [key, block] of read) if (block) current.set(key, block.value);
      const releasedByHandle = new Set<HandleId>();
      prepared.forEach((p, i) => {
        if (!p) return;
        const outcome: Released = { released: [], notAllocated: [], notOwned: [] };
        if ('handle' in p.job) {
          releasedByHandle.add(p.job.handle);
          for (const cidr of p.cidrs) {
            const block = current.get(formatCidr(cidr));
            if (!block) continue;
            const release = releaseHandle(block, p.job.handle, p.job.owns ?? anyOwner);
            current.set(formatCidr(cidr), release.block);
            outcome.released.push(...release.released);
          }
        } else {
          for (const address of p.job.addresses) {
            const cidr = p.cidrs.find((c) => c.version === address.version && enclosingCidr(address, c.prefix).network === c.network);
            const key = cidr && formatCidr(cidr);
            const block = key && current.get(key);
            if (!key || !block) {
              outcome.notAllocated.push(address);
              continue;
            }
            const release = releaseAddresses(block, [address], p.job.owns);
            current.set(key, release.block);
            outcome.released.push(...release.released);
            outcome.notAllocated.push(...release.notAllocated);
            outcome.notOwned.push(...release.notOwned);
            for (const handle of release.releasedByHandle.keys()) releasedByHandle.add(handle);
          }
        }
        results[i] = { ok: true, value: outcome };
      });

      const blocks: BlockChange[] = [];
      for (const [key, before] of read) {
        const after = current.get(key);
        if (before && after && after !== before.value) blocks.push({ cidr: before.value.cidr, before, after });
      }
      const unread = [...releasedByHandle].filter((h) => !records.has(h));
      for (const [id, record] of await this.handleRecords(unread)) records.set(id, record);
      const handles = recountHandles([...releasedByHandle], records, new Map([...read.keys()].map((key) => [key, current.get(key)])));
      if (blocks.length === 0 && handles.length === 0) return { done: { results, deferred } };
      const outcome = await this.writer.write({ blocks, handles });
      return outcome.ok ? { done: { results, deferred } } : 'conflict';
    });
  }

  private async handleRecords(ids: readonly HandleId[]): Promise<Map<HandleId, Versioned<HandleRecord> | 'absent'>> {
    const unique = [...new Set(ids)];
    const entries = await this.ds.kv.readMany(unique.map((id) => ({ key: this.ds.keys.handle(id) })));
    return new Map(unique.map((id, i) => [id, entries[i]![0] ? handleFromEntry(entries[i]![0]) : 'absent']));
  }

  private blocksOfHandle(handle: HandleId, record: Versioned<HandleRecord> | 'absent' | undefined): Cidr[] {
    if (!record || record === 'absent') return [];
    return Object.keys(record.value.block).map((text) => {
      try {
        return parseCidr(text);
      } catch {
        throw new MalformedDataError(this.ds.keys.handle(handle), `field "block" names "${text}", which is not a block CIDR`);
      }
    });
  }

  /** The block each address falls in: by its pool's block size, else by finding a block that holds it. */
  private async blocksOfAddresses(addresses: readonly IpAddress[], pools: readonly Pool[]): Promise<Cidr[]> {
    const found = new Map<string, Cidr>();
    for (const address of addresses) {
      const pool = poolOf(pools, address);
      const cidr = pool ? enclosingCidr(address, pool.blockSize) : await this.blockHolding(address);
      if (cidr) found.set(formatCidr(cidr), cidr);
    }
    return [...found.values()];
  }

  /** A block that holds an address outside every pool (its pool was deleted), found page by page. */
  private async blockHolding(address: IpAddress): Promise<Cidr | undefined> {
    for await (const page of this.ds.kv.pages(this.ds.keys.blockPrefix(address.version), { keysOnly: true })) {
      for (const entry of page) {
        const cidr = this.ds.keys.blockCidrOf(entry.key);
        if (cidr && enclosingCidr(address, cidr.prefix).network === cidr.network) return cidr;
      }
    }
    return undefined;
  }
}

/**
 * New records for the handles a release touched: each block that was read (undefined: it does not
 * exist) counts what it holds of the handle now; blocks not read keep their count. A handle left
 * holding nothing is deleted.
 */
function recountHandles(ids: readonly HandleId[], records: ReadonlyMap<HandleId, Versioned<HandleRecord> | 'absent'>, blocks: ReadonlyMap<string, Block | undefined>): HandleChange[] {
  const changes: HandleChange[] = [];
  for (const id of ids) {
    const record = records.get(id);
    if (!record || record === 'absent') continue;
    const counts: Record<string, number> = { ...record.value.block };
    for (const [key, block] of blocks) {
      const held = block ? ordinalsOfHandle(block, id).length : 0;
      if (held > 0) counts[key] = held;
      else delete counts[key];
    }
    const after = Object.keys(counts).length === 0 ? undefined : { block: counts, deleted: false };
    if (JSON.stringify(after?.block) !== JSON.stringify(record.value.block)) changes.push({ id, before: record, after });
  }
  return changes;
}
