/**
 * The one module that speaks to etcd. Plain string keys and values, revisions, and
 * compare-and-swap transactions; everything above it is typed records. Every call is bounded by
 * the configured deadline twice over: gRPC's own deadline per attempt, and an overall timer,
 * because etcd3 retries across endpoints and without a deadline waits forever on a dropped packet.
 */
import { readFile } from 'node:fs/promises';
import type { Etcd3, IKeyValue, IRequestOp, ICompare, Watcher } from 'etcd3';
import { etcdErrors } from '../diagnostics';
import { InvalidInputError, messageOf } from '../errors';
import { DatastoreRequestError, DatastoreUnavailableError } from './errors';
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

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
  readonly modRevision: Revision;
}

export interface WatchHandle {
  close(): Promise<void>;
}

export class EtcdKv {
  private constructor(
    private readonly client: Etcd3,
    readonly settings: EtcdSettings,
  ) {}

  static async connect(settings: EtcdSettings): Promise<EtcdKv> {
    const [{ Etcd3 }, cockatiel] = await Promise.all([import('etcd3'), import('cockatiel')]);
    const credentials = await readCredentials(settings);
    const recoverable = cockatiel.handleWhen((err) => isUnavailable(err));
    const client = new Etcd3({
      hosts: [...settings.endpoints],
      ...(credentials ? { credentials } : {}),
      dialTimeout: settings.timeoutMs,
      defaultCallOptions: () => ({ deadline: Date.now() + settings.timeoutMs }),
      faultHandling: {
        // Try each endpoint once per call; the CAS loops above us own retrying.
        global: cockatiel.retry(recoverable, { maxAttempts: settings.endpoints.length - 1 }),
        // A failed member is skipped for a second, not the library's default five.
        host: () => cockatiel.circuitBreaker(recoverable, { halfOpenAfter: 1000, breaker: new cockatiel.ConsecutiveBreaker(3) }),
      },
    });
    return new EtcdKv(client, settings);
  }

  close(): void {
    this.client.close();
  }

  async get(key: string): Promise<Entry | undefined> {
    const res = await this.call(`get ${key}`, (c) => c.kv.range({ key: Buffer.from(key) }));
    return res.kvs[0] ? toEntry(res.kvs[0]) : undefined;
  }

  /** Every key under a prefix, in key order; `keysOnly` leaves values empty. */
  async list(prefix: string, options: { keysOnly?: boolean } = {}): Promise<Entry[]> {
    const res = await this.call(`list ${prefix}`, (c) =>
      c.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix), keys_only: options.keysOnly ?? false }),
    );
    return res.kvs.map(toEntry);
  }

  /** Several reads (single keys or prefixes) at one revision, in one round trip. */
  async readMany(reads: readonly Read[]): Promise<Entry[][]> {
    if (reads.length === 0) return [];
    const res = await this.call(`read of ${reads.length} ranges`, (c) => c.kv.txn({ success: reads.map(readOp) }));
    return res.responses.map((r) => (r.response_range?.kvs ?? []).map(toEntry));
  }

  /**
   * Applies every write if every expectation holds, else nothing; on failure it returns what the
   * named keys hold now (read in the same transaction), so a CAS loop needs no extra round trip.
   */
  async txn(ops: readonly TxnOp[]): Promise<TxnOutcome> {
    const keys = [...new Set(ops.map((op) => op.key))];
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
    return { ok: false, current: readResponses(keys, res.responses) };
  }

  /** Follows puts and deletes under a prefix, from `fromRevision` (exclusive) or from now. */
  async watchPrefix(prefix: string, onEvent: (event: WatchEvent) => void, fromRevision?: Revision): Promise<WatchHandle> {
    let builder = this.client.watch().prefix(prefix);
    if (fromRevision !== undefined) builder = builder.startRevision(String(BigInt(fromRevision) + 1n));
    const watcher: Watcher = await this.bounded(`watch ${prefix}`, builder.create());
    const forward = (type: WatchEvent['type']) => (kv: IKeyValue) =>
      onEvent({ type, key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision) });
    watcher.on('put', forward('put'));
    watcher.on('delete', forward('delete'));
    // The library reconnects by itself; errors must not become unhandled 'error' events.
    watcher.on('error', () => undefined);
    return { close: () => watcher.cancel() };
  }

  private call<T>(what: string, fn: (client: Etcd3) => Promise<T>): Promise<T> {
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
      if (unavailable) throw new DatastoreUnavailableError(endpoints, `${what} failed: ${messageOf(err)}`, { cause: err });
      throw new DatastoreRequestError(`etcd refused ${what}: ${messageOf(err)}`, { cause: err });
    });
    return Promise.race([mapped, deadline]).finally(() => clearTimeout(timer));
  }
}

function isUnavailable(err: unknown): boolean {
  const name = err instanceof Error ? err.constructor.name : '';
  return /Unavailable|DeadlineExceeded|BrokenCircuit|Cancelled|ClientClosed|Internal|Unknown/.test(name);
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

function readOp(read: Read): IRequestOp {
  if ('key' in read) return rangeOp(read.key);
  return { request_range: { key: Buffer.from(read.prefix), range_end: prefixEnd(read.prefix) } };
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
