/**
 * The one module that speaks to etcd. Plain string keys and values, revisions, and
 * compare-and-swap transactions; everything above it is typed records. Every call is bounded by
 * the configured deadline twice over: gRPC's own deadline per attempt, and an overall timer,
 * because etcd3 retries across endpoints and without a deadline waits forever on a dropped packet.
 */
import { readFile } from 'node:fs/promises';
import type { IKeyValue, IRequestOp, ICompare, Watcher } from 'etcd3';
import { etcdErrors } from '../diagnostics';
import { InvalidInputError, messageOf } from '../errors';
import { createEtcdClient, type EtcdClient } from './etcd-client';
import { DatastoreAccessError, DatastoreRequestError, DatastoreUnavailableError } from './errors';
import { decodeRangeResponse, encodeRangeRequest, type RangeRequest, type RangeResponse } from './range-codec';
import type { EtcdSettings } from './settings';

/** etcd's mod revision of a key, kept as the decimal string etcd sends. */
export type Revision = string;

export interface Entry {
  readonly key: string;
  readonly value: string;
  readonly modRevision: Revision;
}

/** What a write expects of its key: that it does not exist, or that it is unchanged since read. */
export type Expect = { readonly absent: true } | { readonly modRevision: Revision };

/** A guarded put: a write that lands only if its key is as expected. */
export type GuardedPut = { readonly key: string; readonly put: string; readonly expect: Expect };

export type TxnOp =
  | { readonly key: string; readonly put: string; readonly expect?: Expect }
  | { readonly key: string; readonly delete: true; readonly expect?: Expect }
  /** A key that is only read: the transaction fails if it changed. */
  | { readonly key: string; readonly guard: Expect };

export type TxnOutcome =
  | { readonly ok: true; readonly revision: Revision }
  /** The current state of every key the transaction named, read in the same transaction. */
  | { readonly ok: false; readonly current: ReadonlyMap<string, Entry | undefined> };

export type Read = { readonly key: string } | { readonly prefix: string };

export interface ScanOptions {
  readonly keysOnly?: boolean;
  /** Keys of the first page (default 500); later pages grow in a long scan, and are halved when too large to receive. */
  readonly pageSize?: number;
  /** Continue after this key (exclusive). */
  readonly after?: string;
  /** Read at this revision instead of the newest. */
  readonly revision?: Revision;
}

/** etcd's default --max-txn-ops: compares, successes and failures each at most this many. */
export const MAX_TXN_OPS = 128;
const DEFAULT_PAGE_SIZE = 500;
/** The largest gRPC message we accept; one page is kept well under it by the page size. */
const MAX_MESSAGE_BYTES = 16 << 20;
/** How many reads a long scan aims at, and the most one page may carry (see nextPageSize). */
const SCAN_PAGES = 16;
const PAGE_BYTES = 4 << 20;
/** How often a connection with a stream open is pinged: etcd's --grpc-keepalive-min-time, its default. */
const KEEPALIVE_INTERVAL_MS = 5000;

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
  readonly modRevision: Revision;
}

export interface WatchHandle {
  close(): Promise<void>;
}

/** A key held under a lease (see EtcdKv.hold); released, it is gone at once. */
export interface HeldKey {
  release(): Promise<void>;
}

export class EtcdKv {
  private constructor(
    private readonly client: EtcdClient,
    readonly settings: EtcdSettings,
  ) {}

  static async connect(settings: EtcdSettings): Promise<EtcdKv> {
    const cockatiel = await import('cockatiel');
    const credentials = await readCredentials(settings);
    const recoverable = cockatiel.handleWhen((err) => isUnavailable(err));
    const client = await createEtcdClient({
      hosts: [...settings.endpoints],
      ...(credentials ? { credentials } : {}),
      ...(settings.username !== undefined ? { auth: { username: settings.username, password: settings.password ?? '' } } : {}),
      grpcOptions: {
        'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
        // HTTP/2's default window is 64 KB: while our event loop works through one page, etcd
        // could send no more of the next. With a page's worth of window it sends it meanwhile.
        'grpc-node.flow_control_window': MAX_MESSAGE_BYTES,
        // A stream has no deadline (a watch lasts); a connection that carries one is pinged, and
        // closed when a ping goes unanswered for the deadline, so that a watch on a member that
        // went silent moves to another. etcd refuses pings more often than every 5 s.
        'grpc.keepalive_time_ms': KEEPALIVE_INTERVAL_MS,
        'grpc.keepalive_timeout_ms': settings.timeoutMs,
      },
      defaultCallOptions: (call) => (call.isStream ? {} : { deadline: Date.now() + settings.timeoutMs }),
      faultHandling: {
        // Try each endpoint once per call; the CAS loops above us own retrying.
        global: cockatiel.retry(recoverable, { maxAttempts: settings.endpoints.length - 1 }),
        // A failed member is skipped for a second, not the library's default five.
        host: () => cockatiel.circuitBreaker(recoverable, { halfOpenAfter: 1000, breaker: new cockatiel.ConsecutiveBreaker(3) }),
      },
    }, settings.timeoutMs);
    return new EtcdKv(client, settings);
  }

  close(): void {
    this.client.close();
  }

  async get(key: string): Promise<Entry | undefined> {
    const res = await this.call(`get ${key}`, (c) => c.kv.range({ key: Buffer.from(key) }));
    return res.kvs[0] ? toEntry(res.kvs[0]) : undefined;
  }

  /**
   * Every key under a prefix, in key order; `keysOnly` leaves values empty. Read page by page, so
   * only for prefixes whose whole content the caller needs at once (pools, one host's records);
   * anything that grows with the cluster is read with `pages` and handled a page at a time.
   */
  async list(prefix: string, options: ScanOptions = {}): Promise<Entry[]> {
    const all: Entry[] = [];
    for await (const page of this.pages(prefix, options)) all.push(...page);
    return all;
  }

  /**
   * The keys under a prefix a page at a time, in key order, every page read at the revision of
   * the first (so the whole is one consistent snapshot). A page too large for one gRPC message
   * (blocks with many long attributes) is asked for again in halves. The next page is asked for
   * before this one is handed on, so etcd reads and sends it while the caller works through this
   * one (at most two pages are held at once).
   */
  async *pages(prefix: string, options: ScanOptions = {}): AsyncGenerator<Entry[]> {
    const end = prefixEnd(prefix);
    let revision = options.revision;
    const read = async (start: Buffer, limit: number): Promise<{ res: RangeResponse; limit: number }> => {
      for (;;) {
        try {
          return { res: await this.range(`read of ${prefix}`, { key: start, rangeEnd: end, limit, keysOnly: options.keysOnly ?? false, ...(revision ? { revision } : {}) }), limit };
        } catch (err) {
          if (limit > 1 && isTooLarge(err)) {
            limit = Math.ceil(limit / 2);
            continue;
          }
          throw err;
        }
      }
    };
    let next: ReturnType<typeof read> | undefined = read(options.after === undefined ? Buffer.from(prefix) : keyAfter(options.after), options.pageSize ?? DEFAULT_PAGE_SIZE);
    while (next) {
      const { res, limit } = await next;
      next = undefined;
      revision ??= res.revision;
      const { entries } = res;
      if (res.more && entries.length > 0) {
        next = read(keyAfter(entries[entries.length - 1]!.key), nextPageSize(limit, res.count - entries.length, entries));
        // Its failure is the next iteration's, if the caller asks for more.
        next.catch(() => undefined);
        // One turn of the event loop, so the request is on its way before the caller's work holds the loop.
        await new Promise((sent) => setImmediate(sent));
      }
      if (entries.length > 0) yield entries;
    }
  }

  /**
   * A Range decoded by range-codec.ts, retried on another member as the library retries its own
   * calls (see connect). An expired token is renewed by one call through the library, which
   * knows how, and the read made again.
   */
  private range(what: string, request: RangeRequest): Promise<RangeResponse> {
    const encoded = encodeRangeRequest(request);
    const { endpoints, timeoutMs } = this.settings;
    return this.call(what, async (client) => {
      const order = client.memberOrder();
      for (let attempt = 1; ; attempt++) {
        try {
          return decodeRangeResponse(await client.rawRange(encoded, Date.now() + timeoutMs, order));
        } catch (err) {
          if (err instanceof Error && err.constructor.name === 'EtcdInvalidAuthTokenError' && attempt === 1) {
            await this.revision();
          } else if (!isUnavailable(err) || attempt >= endpoints.length) {
            throw err;
          }
        }
      }
    });
  }

  /**
   * Several reads at one revision per round trip (at most MAX_TXN_OPS of them; more take several).
   * A prefix read is finished page by page at the same revision: only for prefixes bounded by
   * what one host holds.
   */
  async readMany(reads: readonly Read[], options: { serializable?: boolean } = {}): Promise<Entry[][]> {
    const out: Entry[][] = [];
    for (let from = 0; from < reads.length; from += MAX_TXN_OPS) {
      const chunk = reads.slice(from, from + MAX_TXN_OPS);
      const ops = chunk.map((r) => readOp(r, options.serializable ?? false));
      const res = await this.call(`read of ${chunk.length} ranges`, (c) => c.kv.txn({ success: ops }));
      const revision = String(res.header.revision);
      for (const [i, read] of chunk.entries()) {
        const range = res.responses[i]?.response_range;
        const entries = (range?.kvs ?? []).map(toEntry);
        if ('prefix' in read && range?.more && entries.length > 0) {
          for await (const page of this.pages(read.prefix, { revision, after: entries[entries.length - 1]!.key })) entries.push(...page);
        }
        out.push(entries);
      }
    }
    return out;
  }

  /**
   * Applies every write if every expectation holds, else nothing; on failure it returns what the
   * named keys hold now (read in the same transaction), so a CAS loop needs no extra round trip.
   */
  async txn(ops: readonly TxnOp[]): Promise<TxnOutcome> {
    const keys = [...new Set(ops.map((op) => op.key))];
    // etcd refuses more operations per transaction than this; callers keep their batches under it.
    if (keys.length > MAX_TXN_OPS) throw new RangeError(`a transaction on ${keys.length} keys exceeds etcd's ${MAX_TXN_OPS} operations`);
    const compare: ICompare[] = [];
    const success: IRequestOp[] = [];
    for (const op of ops) {
      const expect = 'guard' in op ? op.guard : op.expect;
      if (expect) compare.push(compareOf(op.key, expect));
      if ('put' in op) success.push({ request_put: { key: Buffer.from(op.key), value: Buffer.from(op.put) } });
      if ('delete' in op) success.push({ request_delete_range: { key: Buffer.from(op.key) } });
    }
    const what = `transaction on ${keys[0]}${keys.length > 1 ? ` and ${keys.length - 1} more keys` : ''}`;
    const res = await this.call(what, (c) =>
      c.kv.txn({ compare, success, failure: keys.map(rangeOp) }),
    );
    if (res.succeeded) return { ok: true, revision: String(res.header.revision) };
    const current = readResponses(keys, res.responses);
    const applied = await this.appliedAt(ops, current);
    return applied === undefined ? { ok: false, current } : { ok: true, revision: applied };
  }

  /**
   * The revision at which this very transaction was already applied, if it was. When a member
   * commits it and dies before answering, the client sends it again to another member, where its
   * expectations fail because it changed the keys itself; taken for a lost race, an allocation
   * would be planned and written a second time (an address held with no endpoint). It landed if
   * at one revision every key it puts holds exactly its value and every key it deletes is absent
   * (a byte-identical write by someone else leaves the same state). Only when some key holds our
   * value now is that revision read back: one more round trip, and only then.
   */
  private async appliedAt(ops: readonly TxnOp[], current: ReadonlyMap<string, Entry | undefined>): Promise<Revision | undefined> {
    const puts = ops.filter((op): op is Extract<TxnOp, { put: string }> => 'put' in op);
    const revision = puts.map((op) => current.get(op.key)).find((entry, i) => entry?.value === puts[i]!.put)?.modRevision;
    if (revision === undefined) return undefined;
    const keys = [...current.keys()];
    let then = current;
    if (puts.some((op) => current.get(op.key)?.modRevision !== revision) || ops.some((op) => 'delete' in op && current.get(op.key))) {
      // Failing here (etcd gone, the revision compacted) fails the write: unproven either way, it
      // must not be taken for a lost race.
      const res = await this.call(`read of ${keys.length} keys at revision ${revision}`, (c) =>
        c.kv.txn({ success: keys.map((key) => ({ request_range: { key: Buffer.from(key), revision } })) }),
      );
      then = readResponses(keys, res.responses);
    }
    const held = puts.every((op) => then.get(op.key)?.value === op.put && then.get(op.key)?.modRevision === revision);
    const deleted = ops.every((op) => !('delete' in op) || then.get(op.key) === undefined);
    return held && deleted ? revision : undefined;
  }

  /**
   * Holds `key` for as long as this process lives and reaches etcd: written under a lease of
   * `ttlSeconds` that the client keeps alive, so that it goes by itself when the holder dies. A key
   * a live holder has is not taken, unless `mine` says its value is this holder's own (a restart
   * within the lease); the holder's entry is returned instead. `onLost`: the lease lapsed (etcd
   * was away longer than its TTL), and the key with it.
   */
  async hold(key: string, value: string, ttlSeconds: number, mine: (current: string) => boolean, onLost: (reason: string) => void): Promise<{ held: HeldKey } | { heldBy: Entry }> {
    const lease = this.client.lease(ttlSeconds);
    lease.on('lost', (err: Error) => onLost(err.message));
    const release = () => this.bounded(`revoke the lease of ${key}`, lease.revoke()).catch(() => undefined);
    try {
      const id = await this.bounded(`grant a lease for ${key}`, lease.grant());
      for (let attempt = 0; attempt < 3; attempt++) {
        const current = await this.get(key);
        if (current && !mine(current.value)) {
          await release();
          return { heldBy: current };
        }
        const res = await this.call(`hold ${key}`, (c) => c.kv.txn({
          compare: [compareOf(key, current ? { modRevision: current.modRevision } : { absent: true })],
          success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value), lease: id } }],
        }));
        if (res.succeeded) return { held: { release } };
      }
      throw new DatastoreRequestError(`cannot hold ${key}: it kept changing under us`);
    } catch (err) {
      await release();
      throw err;
    }
  }

  /** The store's revision now (a snapshot read at it and a watch after it miss nothing). */
  async revision(): Promise<Revision> {
    // A read within our prefix: a role limited to it may read nothing else.
    const res = await this.call('read of the revision', (c) => c.kv.range({ key: Buffer.from(`${this.settings.prefix}/`), limit: 1, keys_only: true }));
    return String(res.header.revision);
  }

  /**
   * Follows puts and deletes under a prefix, from `fromRevision` (exclusive) or from now. The
   * client reconnects and resumes by itself; `onLost` hears when etcd ends the watch for good
   * (its revision was compacted away, or it was cancelled), after which events are missing.
   */
  watchPrefix(prefix: string, onEvent: (event: WatchEvent) => void, fromRevision?: Revision, onLost?: (reason: string) => void): Promise<WatchHandle> {
    return this.watch({ prefix }, onEvent, fromRevision, onLost);
  }

  /** Follows one key, as watchPrefix does a prefix. */
  watchKey(key: string, onEvent: (event: WatchEvent) => void, fromRevision?: Revision, onLost?: (reason: string) => void): Promise<WatchHandle> {
    return this.watch({ key }, onEvent, fromRevision, onLost);
  }

  private async watch(what: Read, onEvent: (event: WatchEvent) => void, fromRevision?: Revision, onLost?: (reason: string) => void): Promise<WatchHandle> {
    const prefix = 'prefix' in what ? what.prefix : what.key;
    let builder = 'prefix' in what ? this.client.watch().prefix(what.prefix) : this.client.watch().key(what.key);
    if (fromRevision !== undefined) builder = builder.startRevision(String(BigInt(fromRevision) + 1n));
    const watcher: Watcher = await this.bounded(`watch ${prefix}`, builder.create());
    const forward = (type: WatchEvent['type']) => (kv: IKeyValue) =>
      onEvent({ type, key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision) });
    watcher.on('put', forward('put'));
    watcher.on('delete', forward('delete'));
    let ended = false;
    // The library reconnects by itself; errors must not become unhandled 'error' events.
    watcher.on('error', (err: Error) => {
      ended = true;
      onLost?.(err.message);
    });
    // A watch etcd has ended is gone already: the library's cancel would wait for an answer that
    // never comes. Any other cancel is bounded too, and a watch that cannot be cancelled is left.
    return { close: () => (ended ? Promise.resolve() : this.bounded(`cancel the watch of ${prefix}`, watcher.cancel()).catch(() => undefined)) };
  }

  private call<T>(what: string, fn: (client: EtcdClient) => Promise<T>): Promise<T> {
    return this.bounded(what, Promise.resolve().then(() => fn(this.client)));
  }

  /** Races the call against the deadline and turns every failure into one of our errors. */
  private bounded<T>(what: string, pending: Promise<T>): Promise<T> {
    const { endpoints, timeoutMs } = this.settings;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        etcdErrors.publish({ kind: 'unavailable' });
        reject(new DatastoreUnavailableError(endpoints, `no answer to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    const mapped = pending.catch((err: unknown) => {
      const unavailable = isUnavailable(err);
      etcdErrors.publish({ kind: unavailable ? 'unavailable' : 'request' });
      // gRPC ends some messages with an empty "Resolution note:": it says nothing.
      const detail = messageOf(err).replace(/\.?\s*Resolution note:\s*$/, '');
      if (unavailable) throw new DatastoreUnavailableError(endpoints, `${what} failed: ${detail}`, { cause: err });
      if (isAccessDenied(err)) throw new DatastoreAccessError(endpoints, `${what}: ${detail}`, { cause: err });
      throw new DatastoreRequestError(`etcd refused ${what}: ${detail}`, { cause: err });
    });
    return Promise.race([mapped, deadline]).finally(() => clearTimeout(timer));
  }
}

function isAccessDenied(err: unknown): boolean {
  const name = err instanceof Error ? err.constructor.name : '';
  return /AuthenticationFailed|PermissionDenied|InvalidAuthToken/.test(name) || /user name is empty|authentication is not enabled/i.test(messageOf(err));
}

function isUnavailable(err: unknown): boolean {
  const name = err instanceof Error ? err.constructor.name : '';
  return /Unavailable|DeadlineExceeded|BrokenCircuit|Cancelled|ClientClosed|Internal|Unknown/.test(name);
}

/**
 * etcd 3.4 counts every key to the end of the range on each read, so a page costs as much as the
 * rest of the range: a long scan in small pages costs the square of its length. Pages grow so a
 * scan takes about SCAN_PAGES reads, but never beyond PAGE_BYTES (as measured on the last page).
 */
function nextPageSize(limit: number, remaining: number, page: readonly Entry[]): number {
  const bytes = page.reduce((n, e) => n + e.key.length + e.value.length, 0) / page.length || 1;
  const wanted = Math.ceil(remaining / SCAN_PAGES);
  return Math.max(limit, Math.min(wanted, Math.floor(PAGE_BYTES / bytes)));
}

/** gRPC's RESOURCE_EXHAUSTED: a message larger than the client accepts. */
function isTooLarge(err: unknown): boolean {
  const cause = (err as { cause?: unknown }).cause ?? err;
  return cause instanceof Error && (cause.constructor.name === 'GRPCResourceExhastedError' || /larger than max|RESOURCE_EXHAUSTED/i.test(cause.message));
}

async function readCredentials(settings: EtcdSettings) {
  const read = async (field: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return await readFile(path);
    } catch (err) {
      throw new InvalidInputError(field, `cannot read "${path}": ${messageOf(err)}`);
    }
  };
  const [ca, cert, key] = await Promise.all([
    read('etcd_ca_cert_file', settings.caCertFile),
    read('etcd_cert_file', settings.certFile),
    read('etcd_key_file', settings.keyFile),
  ]);
  if (!ca && !cert) return undefined;
  if (!ca) throw new InvalidInputError('etcd_ca_cert_file', 'a client certificate needs the CA certificate that signed the server');
  return { rootCertificate: ca, ...(key ? { privateKey: key } : {}), ...(cert ? { certChain: cert } : {}) };
}

function compareOf(key: string, expect: Expect): ICompare {
  if ('absent' in expect) return { key: Buffer.from(key), target: 'Version', result: 'Equal', version: 0 };
  return { key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: expect.modRevision };
}

function rangeOp(key: string): IRequestOp {
  return { request_range: { key: Buffer.from(key) } };
}

/**
 * A range read; `serializable` reads the member's own copy without waiting for writes in flight
 * to be agreed (faster under writes, possibly a moment stale).
 */
function readOp(read: Read, serializable: boolean): IRequestOp {
  const range = 'key' in read ? { key: Buffer.from(read.key) } : { key: Buffer.from(read.prefix), range_end: prefixEnd(read.prefix), limit: DEFAULT_PAGE_SIZE };
  return { request_range: { ...range, serializable } };
}

function readResponses(keys: readonly string[], responses: { response_range?: { kvs: IKeyValue[] } }[]) {
  const out = new Map<string, Entry | undefined>();
  keys.forEach((key, i) => {
    const kv = responses[i]?.response_range?.kvs[0];
    out.set(key, kv ? toEntry(kv) : undefined);
  });
  return out;
}

function toEntry(kv: IKeyValue): Entry {
  return { key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision) };
}

/** The smallest key greater than `key`. */
function keyAfter(key: string): Buffer {
  return Buffer.concat([Buffer.from(key), Buffer.from([0])]);
}

/** The smallest key greater than every key with this prefix. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
