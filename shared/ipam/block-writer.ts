/**
 * Reads and writes blocks with their handles in single guarded transactions, and caches what it
 * saw: in steady state an allocation is one round trip, because a failed transaction returns the
 * current values and the cache is refreshed from them.
 */
import {
  encodeBlock,
  decodeEach,
  encodeHandle,
  type Datastore,
  type Entry,
  type Expect,
  type HandleRecord,
  type TxnOp,
} from '../datastore';
import { formatCidr, type Cidr } from '../net/cidr';
import type { Block } from './block';
import { blockFromEntry, handleFromEntry, recordFromBlock, type Versioned } from './records';

/** A handle's state as far as this operation knows: read, known absent, or not read yet. */
export type KnownHandle = Versioned<HandleRecord> | 'absent';

export interface HandleChange {
  readonly id: string;
  readonly before: KnownHandle;
  readonly after: HandleRecord | undefined;
}

/** A block as read (or known absent) and what it becomes; `after: null` deletes it. */
export interface BlockChange {
  readonly cidr: Cidr;
  readonly before: Versioned<Block> | 'absent';
  readonly after: Block | null;
}

export interface Change {
  readonly blocks?: readonly BlockChange[];
  readonly handles?: readonly HandleChange[];
  readonly guards?: readonly Guard[];
  /** Other keys deleted in the same transaction, guarded by their revision (an affinity). */
  readonly deletes?: readonly { key: string; modRevision: string }[];
}

/** A key only read (guarded), or another write that must happen in the same transaction. */
export type Guard = { readonly key: string; readonly expect: Expect; readonly put?: string };

export type WriteOutcome =
  | { readonly ok: true; readonly revision: string }
  | {
      readonly ok: false;
      readonly handles: ReadonlyMap<string, KnownHandle>;
      readonly changedGuards: boolean;
      /** The guards' keys that no longer hold what they expected. */
      readonly mismatched: ReadonlySet<string>;
    };

/**
 * Records other than blocks remembered at most, and their bytes (handles and workload endpoints
 * of this host's live workloads, a few hundred of a few hundred bytes; 10 kB IDs make them
 * tens of kB): beyond either, the oldest is forgotten, which costs its next release a round trip.
 */
const MAX_REMEMBERED = 4096;
const MAX_REMEMBERED_BYTES = 16 << 20;

export class BlockWriter {
  private readonly cache = new Map<string, Versioned<Block>>();
  /**
   * Other records this client's transactions wrote or found present (handles, companions), as of
   * then; one not here is unknown, or known absent. Only ever a guess to be guarded: a release
   * relies on them, and its transaction checks every one (releaser.ts).
   */
  private readonly remembered = new Map<string, Entry>();
  private rememberedBytes = 0;

  constructor(private readonly ds: Datastore) {}

  /** Blocks by CIDR, from the cache where present, the rest in one round trip. */
  /**
   * `skipMalformed`: a block that cannot be read is left out of the map (told on the
   * malformed-records channel) instead of failing the read; absent blocks map to undefined.
   */
  async blocks(cidrs: readonly Cidr[], options: { fresh?: boolean; skipMalformed?: boolean } = {}): Promise<Map<string, Versioned<Block> | undefined>> {
    const out = new Map<string, Versioned<Block> | undefined>();
    const missing: Cidr[] = [];
    for (const cidr of cidrs) {
      const cached = options.fresh ? undefined : this.cache.get(this.ds.keys.block(cidr));
      if (cached) out.set(formatCidr(cidr), cached);
      else missing.push(cidr);
    }
    if (missing.length > 0) {
      const entries = await this.ds.kv.readMany(missing.map((c) => ({ key: this.ds.keys.block(c) })));
      const read = missing.map((cidr, i) => ({ cidr, entry: entries[i]![0] }));
      const decode = ({ cidr, entry }: (typeof read)[number]) => [cidr, this.remember(this.ds.keys.block(cidr), entry, cidr)] as const;
      for (const [cidr, block] of options.skipMalformed ? decodeEach(read, decode) : read.map(decode)) out.set(formatCidr(cidr), block);
    }
    return out;
  }

  async handle(id: string): Promise<KnownHandle> {
    const entry = await this.ds.kv.get(this.ds.keys.handle(id));
    return entry ? handleFromEntry(entry) : 'absent';
  }

  /**
   * One transaction: blocks written over what was read of them (or deleted, `after: null`), handle
   * changes, guards and guarded deletes, all applied or none. On a lost race the cache and the
   * returned handles hold the values that won.
   */
  async write(change: Change): Promise<WriteOutcome> {
    const blocks = change.blocks ?? [];
    const handles = change.handles ?? [];
    const guards = change.guards ?? [];
    const ops: TxnOp[] = [];
    for (const { cidr, before, after } of blocks) {
      const key = this.ds.keys.block(cidr);
      const expect: Expect = before === 'absent' ? { absent: true } : { modRevision: before.modRevision };
      ops.push(after ? { key, put: encodeBlock(recordFromBlock(after)), expect } : { key, delete: true, expect });
    }
    for (const handle of handles) ops.push(this.handleOp(handle));
    for (const g of guards) ops.push(g.put === undefined ? { key: g.key, guard: g.expect } : { key: g.key, put: g.put, expect: g.expect });
    for (const d of change.deletes ?? []) ops.push({ key: d.key, delete: true, expect: { modRevision: d.modRevision } });

    const outcome = await this.ds.kv.txn(ops);
    const blockKeys = new Set(blocks.map(({ cidr }) => this.ds.keys.block(cidr)));
    const others = ops.filter((op) => !blockKeys.has(op.key));
    if (outcome.ok) {
      for (const { cidr, after } of blocks) {
        const key = this.ds.keys.block(cidr);
        if (after) this.cache.set(key, { value: after, modRevision: outcome.revision });
        else this.cache.delete(key);
      }
      for (const op of others) {
        if ('put' in op) this.rememberEntry(op.key, { key: op.key, value: op.put, modRevision: outcome.revision });
        else if ('delete' in op || ('absent' in op.guard)) this.forget(op.key);
      }
      return outcome;
    }
    for (const { cidr } of blocks) this.remember(this.ds.keys.block(cidr), outcome.current.get(this.ds.keys.block(cidr)), cidr);
    for (const op of others) this.rememberEntry(op.key, outcome.current.get(op.key));
    const seen = new Map<string, KnownHandle>();
    for (const handle of handles) {
      const entry = outcome.current.get(this.ds.keys.handle(handle.id));
      seen.set(handle.id, entry ? handleFromEntry(entry) : 'absent');
    }
    const mismatched = new Set(guards.filter((g) => !matches(outcome.current.get(g.key), g.expect)).map((g) => g.key));
    return { ok: false, handles: seen, changedGuards: mismatched.size > 0, mismatched };
  }

  private handleOp(change: HandleChange): TxnOp {
    const key = this.ds.keys.handle(change.id);
    const expect: Expect = change.before === 'absent' ? { absent: true } : { modRevision: change.before.modRevision };
    return change.after ? { key, put: encodeHandle(change.after), expect } : { key, delete: true, expect };
  }

  /** The record at `key` as this client last saw it in a transaction, if present then. */
  recall(key: string): Entry | undefined {
    return this.remembered.get(key);
  }

  private rememberEntry(key: string, entry: Entry | undefined): void {
    this.forget(key);
    if (!entry) return;
    this.remembered.set(key, entry);
    this.rememberedBytes += entry.key.length + entry.value.length;
    while (this.remembered.size > MAX_REMEMBERED || this.rememberedBytes > MAX_REMEMBERED_BYTES) this.forget(this.remembered.keys().next().value!);
  }

  private forget(key: string): void {
    const entry = this.remembered.get(key);
    if (!entry) return;
    this.remembered.delete(key);
    this.rememberedBytes -= entry.key.length + entry.value.length;
  }

  /** Records a block entry read from etcd (or its absence) in the cache. */
  remember(key: string, entry: Entry | undefined, cidr: Cidr): Versioned<Block> | undefined {
    if (!entry) {
      this.cache.delete(key);
      return undefined;
    }
    const block = blockFromEntry(entry, cidr);
    this.cache.set(key, block);
    return block;
  }

  isCached(cidr: Cidr): boolean {
    return this.cache.has(this.ds.keys.block(cidr));
  }
}

function matches(entry: Entry | undefined, expect: Expect): boolean {
  return 'absent' in expect ? entry === undefined : entry?.modRevision === expect.modRevision;
}

export function guardOf(key: string, modRevision: string | undefined): Guard {
  return { key, expect: modRevision === undefined ? { absent: true } : { modRevision } };
}
