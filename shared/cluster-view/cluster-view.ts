/**
 * One daemon's view of what its keepers need of the cluster: pools, Nodes, block affinities, BGP
 * configuration and peers. It is read once, a page at a time at one etcd revision, and then
 * followed by one watch per prefix from that revision; every change updates the in-memory records
 * and is handed to subscribers as a typed delta. So a remote change costs its own watch event,
 * whatever the size of the cluster.
 *
 * When etcd ends a watch for good (its revision was compacted away while the watch was
 * disconnected), the view reads everything again at a new revision and hands on only what differs
 * from what it had. While etcd is away, the view keeps what it has and retries with backoff.
 */
import type { Datastore, WatchEvent, WatchHandle } from '../datastore';
import { messageOf } from '../errors';
import type { Logger } from '../log';
import { recordOf, sectionsOf, type AnySection, type SectionKind, type ViewAffinity, type ViewRecords } from './sections';

export type ClusterDelta = {
  [K in SectionKind]: { readonly kind: K; readonly id: string; readonly before: ViewRecords[K] | undefined; readonly after: ViewRecords[K] | undefined };
}[SectionKind];

export type ClusterListener = (delta: ClusterDelta) => void;

type Records = { [K in SectionKind]: Map<string, ViewRecords[K]> };

const RETRY_MS = { first: 1000, max: 30_000 };
/** How long etcd takes to end a view's other watches after it ended one (see lost()). */
const SIBLINGS_END_MS = 1000;

export class ClusterView {
  private readonly records: Records = emptyRecords();
  /** Affinities by host, then by the id the records use: a host's blocks without a scan. */
  private readonly byHost = new Map<string, Map<string, ViewAffinity>>();
  private readonly listeners: ClusterListener[] = [];
  private watches: WatchHandle[] = [];
  /** Bumped by every (re-)snapshot: events of an older watch are ignored. */
  private generation = 0;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private markReady!: () => void;
  /** Settles once the first snapshot is in. */
  readonly ready = new Promise<void>((resolve) => (this.markReady = resolve));
  /** How often the whole was read (once, unless a watch was lost). */
  snapshots = 0;

  constructor(
    private readonly datastore: () => Promise<Datastore>,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.snapshot(RETRY_MS.first);
  }

  /** Hears every delta from now on (records already in are not replayed: read them with get/all). */
  subscribe(listener: ClusterListener): void {
    this.listeners.push(listener);
  }

  get<K extends SectionKind>(kind: K, id: string): ViewRecords[K] | undefined {
    return this.records[kind].get(id) as ViewRecords[K] | undefined;
  }

  all<K extends SectionKind>(kind: K): IterableIterator<ViewRecords[K]> {
    return this.records[kind].values() as IterableIterator<ViewRecords[K]>;
  }

  size(kind: SectionKind): number {
    return this.records[kind].size;
  }

  /** A host's affinities (confirmed or not). */
  affinitiesOf(host: string): Iterable<ViewAffinity> {
    return this.byHost.get(host)?.values() ?? [];
  }

  private async snapshot(retryIn: number): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    await this.closeWatches();
    try {
      const ds = await this.datastore();
      const sections = sectionsOf(ds);
      const revision = await ds.kv.revision();
      const fresh = emptyRecords();
      for (const section of sections) {
        const into = fresh[section.kind] as Map<string, unknown>;
        for await (const page of ds.kv.pages(section.prefix, { revision })) {
          for (const entry of page) {
            const found = recordOf(section, entry);
            if (found) into.set(found.id, found.record);
          }
        }
      }
      if (generation !== this.generation || this.stopped) return;
      this.replaceWith(fresh);
      this.snapshots++;
      this.watches = await Promise.all(sections.map((section) =>
        ds.kv.watchPrefix(section.prefix, (event) => this.onEvent(generation, section, event), revision, (reason) => this.lost(generation, reason)),
      ));
      if (this.stopped) return void (await this.closeWatches());
      this.log.debug('cluster view read', { revision, nodes: fresh.node.size, affinities: fresh.affinity.size, pools: fresh.pool.size });
      this.markReady();
    } catch (err) {
      if (generation !== this.generation || this.stopped) return;
      await this.closeWatches();
      this.log.warning('cannot read the cluster view yet; retrying', { error: messageOf(err), retryInMs: retryIn });
      this.retryTimer = setTimeout(() => void this.snapshot(Math.min(retryIn * 2, RETRY_MS.max)), retryIn);
    }
  }

  private lost(generation: number, reason: string): void {
    if (generation !== this.generation || this.stopped) return;
    this.log.warning('a cluster view watch ended; reading the view again', { reason });
    // After a compaction etcd ends the other watches too, a moment later. They are closed only
    // after that moment: the etcd3 library throws, uncaught, when a watch it is cancelling is
    // ended by etcd meanwhile (an answer for a watch it no longer knows).
    this.generation++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.snapshot(RETRY_MS.first), SIBLINGS_END_MS);
  }

  /** Takes a fresh read in, handing on only what differs from what was there. */
  private replaceWith(fresh: Records): void {
    for (const kind of Object.keys(fresh) as SectionKind[]) {
      const now = fresh[kind] as Map<string, unknown>;
      const before = this.records[kind] as Map<string, unknown>;
      for (const [id, record] of now) if (!sameRecord(before.get(id), record)) this.change(kind, id, record);
      for (const id of [...before.keys()]) if (!now.has(id)) this.change(kind, id, undefined);
    }
  }

  private onEvent(generation: number, section: AnySection, event: WatchEvent): void {
    if (generation !== this.generation || this.stopped) return;
    const id = section.idOf(event.key);
    if (id === undefined) return;
    const found = event.type === 'put' ? recordOf(section, event) : undefined;
    // A value that no longer checks out counts as gone.
    this.change(section.kind, id, found?.record);
  }

  private change(kind: SectionKind, id: string, after: unknown): void {
    const records = this.records[kind] as Map<string, unknown>;
    const before = records.get(id);
    if (before === undefined && after === undefined) return;
    if (after === undefined) records.delete(id);
    else records.set(id, after);
    if (kind === 'affinity') this.indexAffinity(id, before as ViewAffinity | undefined, after as ViewAffinity | undefined);
    const delta = { kind, id, before, after } as ClusterDelta;
    for (const listener of this.listeners) {
      try {
        listener(delta);
      } catch (err) {
        this.log.error('a cluster view subscriber failed', { kind, id, error: messageOf(err) });
      }
    }
  }

  private indexAffinity(id: string, before: ViewAffinity | undefined, after: ViewAffinity | undefined): void {
    if (before) {
      const host = this.byHost.get(before.host);
      host?.delete(id);
      if (host?.size === 0) this.byHost.delete(before.host);
    }
    if (after) {
      let host = this.byHost.get(after.host);
      if (!host) this.byHost.set(after.host, (host = new Map()));
      host.set(id, after);
    }
  }

  private async closeWatches(): Promise<void> {
    const watches = this.watches;
    this.watches = [];
    await Promise.allSettled(watches.map((w) => w.close()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.closeWatches();
  }
}

function emptyRecords(): Records {
  return { pool: new Map(), node: new Map(), affinity: new Map(), bgpConfiguration: new Map(), bgpPeer: new Map() };
}

/**
 * Whether a fresh read's record is the one already held. Resources carry their revision, so a
 * rewrite counts as a change; the other records are compared by what they say.
 */
function sameRecord(a: unknown, b: unknown): boolean {
  return a !== undefined && canonical(a) === canonical(b);
}

/** JSON with bigints (addresses, CIDRs) as their decimal text. */
function canonical(record: unknown): string {
  return JSON.stringify(record, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}
