/**
 * Releases for a batch of requests: the handles and blocks they touch are taken as last seen
 * (RecalledRecords below), every release is applied by the pure block functions, and one
 * transaction writes the blocks and the handle records, guarded by the revisions relied on. Only
 * what the owner test accepts is freed: an address of another owner stays where it is and is
 * reported. Handle records are recounted from the blocks, so a stale count (a crash between two
 * writes of an older release) heals.
 */
import { MalformedDataError, type Datastore, type Entry, type HandleRecord } from '../datastore';
import type { IpAddress } from '../net/address';
import { enclosingCidr, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { anyOwner, ordinalsOfHandle, releaseAddresses, releaseHandle, type Block, type HandleId, type OwnerTest } from './block';
import { guardOf, type BlockChange, type BlockWriter, type Guard, type HandleChange } from './block-writer';
import { casLoop, type Round } from './cas';
import { MAX_BLOCKS_PER_TXN } from './assigner';
import type { Served } from './group-commit';
import { poolOf, type Pool } from './pool';
import { handleFromEntry, type Versioned } from './records';

/**
 * Another record deleted in the release's own transaction (a workload's endpoint): taken as the
 * handles are, and deleted under the revision it was judged at, where `owns` says it is the
 * releasing workload's. One `owns` cannot judge (it throws: the record cannot be read) is left to
 * the caller.
 */
export interface ReleaseCompanion {
  readonly key: string;
  readonly owns: (entry: Entry) => boolean;
}

/** What became of a companion record; undefined in Released when it was left to the caller. */
export type CompanionOutcome = 'deleted' | 'absent' | 'not ours';

export type ReleaseJob =
  /** Every address of a handle (that `owns` accepts: a legacy handle may be shared). */
  | { readonly handle: HandleId; readonly owns?: OwnerTest; readonly companion?: ReleaseCompanion }
  /** These addresses, where `owns` accepts their owner. */
  | { readonly addresses: readonly IpAddress[]; readonly owns: OwnerTest };

export interface Released {
  readonly released: IpAddress[];
  readonly notAllocated: IpAddress[];
  /** Allocated to another owner: left alone. */
  readonly notOwned: IpAddress[];
  readonly companion?: CompanionOutcome;
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
      const memory = new RecalledRecords(this.writer);
      const records = memory.handles(this.ds, jobs.flatMap((j) => ('handle' in j ? [j.handle] : [])));
      const pools = jobs.some((j) => 'addresses' in j) ? await this.pools() : [];

      // Which blocks each job touches; jobs beyond what one transaction may write wait, and so
      // does a second job deleting the same companion record (a transaction names a key once).
      const prepared: (Prepared | undefined)[] = [];
      const cidrs = new Map<string, Cidr>();
      const companionKeys = new Set<string>();
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
        const companion = 'companion' in job ? job.companion?.key : undefined;
        if (i > 0 && (deferred.length > 0 || needed.size > MAX_BLOCKS_PER_TXN || prepared.length >= MAX_BLOCKS_PER_TXN || (companion !== undefined && companionKeys.has(companion)))) {
          deferred.push(i);
          prepared.push(undefined);
          continue;
        }
        for (const cidr of touches) cidrs.set(formatCidr(cidr), cidr);
        if (companion !== undefined) companionKeys.add(companion);
        prepared.push({ job, cidrs: touches });
      }

      const blocksRead = await this.writer.blocks([...cidrs.values()]);
      const current = new Map<string, Block>();
      for (const [key, block] of blocksRead) if (block) current.set(key, block.value);
      const releasedByHandle = new Set<HandleId>();
      const deletes: { key: string; modRevision: string }[] = [];
      prepared.forEach((p, i) => {
        if (!p) return;
        const companion = 'companion' in p.job && p.job.companion ? companionOutcome(p.job.companion, memory.entry(p.job.companion.key), deletes) : undefined;
        const outcome: Released = { released: [], notAllocated: [], notOwned: [], ...(companion ? { companion } : {}) };
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
      for (const [key, before] of blocksRead) {
        const after = current.get(key);
        if (before && after && after !== before.value) blocks.push({ cidr: before.value.cidr, before, after });
      }
      const others = [...releasedByHandle].filter((h) => !records.has(h));
      for (const [id, record] of memory.handles(this.ds, others)) records.set(id, record);
      const handles = recountHandles([...releasedByHandle], records, new Map([...blocksRead.keys()].map((key) => [key, current.get(key)])));
      const written = new Set([...handles.map((h) => this.ds.keys.handle(h.id)), ...deletes.map((d) => d.key)]);
      const guards = memory.guards(written);
      if (blocks.length === 0 && handles.length === 0 && deletes.length === 0 && guards.length === 0) return { done: { results, deferred } };
      const outcome = await this.writer.write({ blocks, handles, deletes, guards });
      if (outcome.ok) return { done: { results, deferred } };
      // A record taken for absent, for want of knowing it, was there: the round learnt it
      // (the failed transaction brought it), it did not lose a race.
      return memory.learntOfAssumed() ? 'again' : 'conflict';
    });
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
 * A release reads nothing before its transaction: handle records and companions are taken as this
 * client's transactions last saw them, and one it never saw as absent, and the transaction is
 * guarded by every one taken so (a write's own expectation, else a guard). In the node daemon,
 * which wrote a workload's handle and endpoint at its ADD and caches its host's blocks, a DEL is
 * one round trip; a client that knows nothing (a plugin on its own) loses one transaction, which
 * brings the current values, then writes.
 */
class RecalledRecords {
  /** Every record the round relied on, by key, as taken (undefined: absent). */
  private readonly relied = new Map<string, Entry | undefined>();
  /** Those taken for absent because nothing was known of them. */
  private readonly assumed = new Set<string>();

  constructor(private readonly writer: BlockWriter) {}

  entry(key: string): Entry | undefined {
    if (this.relied.has(key)) return this.relied.get(key);
    const entry = this.writer.recall(key);
    this.relied.set(key, entry);
    if (!entry) this.assumed.add(key);
    return entry;
  }

  handles(ds: Datastore, ids: readonly HandleId[]): Map<HandleId, Versioned<HandleRecord> | 'absent'> {
    return new Map(ids.map((id) => {
      const entry = this.entry(ds.keys.handle(id));
      return [id, entry ? handleFromEntry(entry) : 'absent'];
    }));
  }

  /** Guards for the records relied on that the transaction does not write (a write carries its own). */
  guards(written: ReadonlySet<string>): Guard[] {
    return [...this.relied].filter(([key]) => !written.has(key)).map(([key, entry]) => guardOf(key, entry?.modRevision));
  }

  /** After a failed transaction: whether a record assumed absent turned out to be there. */
  learntOfAssumed(): boolean {
    return [...this.assumed].some((key) => this.writer.recall(key) !== undefined);
  }
}

/**
 * What becomes of a companion as read: absent, another's (left), or the releaser's (its guarded
 * delete joins `deletes`); undefined, left to the caller, when `owns` cannot judge it.
 */
function companionOutcome(companion: ReleaseCompanion, entry: Entry | undefined, deletes: { key: string; modRevision: string }[]): CompanionOutcome | undefined {
  if (!entry) return 'absent';
  let ours: boolean;
  try {
    ours = companion.owns(entry);
  } catch {
    return undefined;
  }
  if (!ours) return 'not ours';
  deletes.push({ key: entry.key, modRevision: entry.modRevision });
  return 'deleted';
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
