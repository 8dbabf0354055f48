/**
 * Registers this host as a Node (with the address other hosts reach it on) and keeps its routes to
 * every host's blocks in step with etcd: a watch on affinities and nodes triggers a resync soon
 * after any change, and a periodic resync repairs anything a lost watch event or a manual edit did.
 * etcd being away is retried with backoff; the daemon's other jobs never wait on it.
 */
import { decodeAffinity, decodeBlock, type Datastore, type WatchHandle } from '../shared/datastore';
import { addressAt, formatCidr, type Cidr } from '../shared/net';
import { detectHostAddresses, enableForwarding, syncRoutes } from '../shared/dataplane/routes';
import { messageOf } from '../shared/errors';
import type { Logger } from '../shared/log';
import { desiredRoutes, type BlockAffinity, type HostAddresses, type LentAddress } from '../shared/routing/desired-routes';

const DEBOUNCE_MS = 100;
const RESYNC_MS = 30_000;
const RETRY_MS = { first: 1000, max: 30_000 };

export interface RouteKeeperSettings {
  readonly node: string;
  /** "auto" (detect), "none" (do not register), or "a.b.c.d/len". */
  readonly nodeAddress: string;
}

export class RouteKeeper {
  private watches: WatchHandle[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** When the pending sync is due: a later request never postpones an earlier one. */
  private dueAt = Infinity;
  private stopped = false;
  private syncing: Promise<void> = Promise.resolve();
  /** Blocks affine to this host, as of the last sync: a change to one of them may lend an address. */
  private ownBlocks = new Set<string>();

  constructor(
    private readonly datastore: () => Promise<Datastore>,
    private readonly settings: RouteKeeperSettings,
    private readonly log: Logger,
  ) {}

  /** Starts in the background; failures are logged and retried. */
  start(): void {
    void this.run(RETRY_MS.first);
  }

  private async run(retryIn: number): Promise<void> {
    if (this.stopped) return;
    try {
      await enableForwarding();
      const ds = await this.datastore();
      await this.register(ds);
      const resync = () => this.schedule(DEBOUNCE_MS);
      this.watches = [
        await ds.kv.watchPrefix(ds.keys.affinitiesPrefix(), resync),
        await ds.kv.watchPrefix(ds.keys.resourcePrefix('Node'), resync),
        // Blocks: an address of one of ours taken by another host's workload needs a route to it.
        await ds.kv.watchPrefix(ds.keys.blockPrefix(4), (event) => this.ownsBlock(ds, event.key) && resync()),
        await ds.kv.watchPrefix(ds.keys.blockPrefix(6), (event) => this.ownsBlock(ds, event.key) && resync()),
      ];
      if (this.stopped) return void (await this.closeWatches());
      this.schedule(0);
    } catch (err) {
      await this.closeWatches();
      this.log.warning('cannot keep routes yet; retrying', { error: messageOf(err), retryInMs: retryIn });
      setTimeout(() => void this.run(Math.min(retryIn * 2, RETRY_MS.max)), retryIn).unref();
    }
  }

  private async register(ds: Datastore): Promise<void> {
    if (this.settings.nodeAddress === 'none') return;
    const detected = this.settings.nodeAddress === 'auto' ? await detectHostAddresses() : { ipv4: this.settings.nodeAddress };
    const bgp = { ...(detected.ipv4 ? { ipv4Address: detected.ipv4 } : {}), ...(detected.ipv6 ? { ipv6Address: detected.ipv6 } : {}) };
    const existing = await ds.resources.get('Node', this.settings.node);
    if (!existing) await ds.resources.create({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name: this.settings.node }, spec: { bgp } });
    else if (JSON.stringify(existing.spec.bgp ?? {}) !== JSON.stringify(bgp)) await ds.resources.update({ ...existing, spec: { ...existing.spec, bgp } });
    this.log.info('node registered', { ipv4: bgp.ipv4Address, ipv6: bgp.ipv6Address });
  }

  private ownsBlock(ds: Datastore, key: string): boolean {
    const cidr = ds.keys.blockCidrOf(key);
    return cidr !== undefined && this.ownBlocks.has(formatCidr(cidr));
  }

  private schedule(delay: number): void {
    if (this.stopped || Date.now() + delay >= this.dueAt) return;
    clearTimeout(this.timer);
    this.dueAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.dueAt = Infinity;
      this.syncing = this.syncing.then(() => this.sync());
    }, delay);
  }

  private async sync(): Promise<void> {
    try {
      const ds = await this.datastore();
      const [affinityEntries, nodes] = await Promise.all([ds.kv.list(ds.keys.affinitiesPrefix()), ds.resources.list('Node')]);
      const affinities: BlockAffinity[] = [];
      for (const entry of affinityEntries) {
        const named = ds.keys.affinityOf(entry.key);
        if (named) affinities.push({ host: named.host, cidr: named.cidr, confirmed: decodeAffinity(entry.key, entry.value).state === 'confirmed' });
      }
      const hosts: HostAddresses[] = nodes.map((n) => ({ name: n.metadata.name, ipv4Address: n.spec.bgp?.ipv4Address, ipv6Address: n.spec.bgp?.ipv6Address }));
      const own = affinities.filter((a) => a.host === this.settings.node && a.confirmed).map((a) => a.cidr);
      this.ownBlocks = new Set(own.map(formatCidr));
      const result = await syncRoutes(desiredRoutes(this.settings.node, affinities, hosts, await this.lentAddresses(ds, own)));
      if (result.added || result.removed) this.log.info('routes updated', { added: result.added, removed: result.removed });
      if (result.failure) this.log.warning('some routes could not be made', { error: result.failure });
    } catch (err) {
      this.log.warning('route sync failed; will retry', { error: messageOf(err) });
    } finally {
      this.schedule(RESYNC_MS);
    }
  }

  /** Addresses of this host's blocks held by other hosts' workloads (only this host's blocks are read). */
  private async lentAddresses(ds: Datastore, blocks: readonly Cidr[]): Promise<LentAddress[]> {
    const lent: LentAddress[] = [];
    const entries = await ds.kv.readMany(blocks.map((cidr) => ({ key: ds.keys.block(cidr) })));
    for (const [i, [entry]] of entries.entries()) {
      if (!entry) continue;
      const block = decodeBlock(entry.key, entry.value, blocks[i]);
      block.allocations.forEach((attribute, ordinal) => {
        const host = attribute === null ? undefined : block.attributes[attribute]?.secondary?.node;
        if (host && host !== this.settings.node) lent.push({ address: addressAt(blocks[i]!, BigInt(ordinal)), host });
      });
    }
    return lent;
  }

  private async closeWatches(): Promise<void> {
    const watches = this.watches;
    this.watches = [];
    await Promise.allSettled(watches.map((w) => w.close()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.closeWatches();
    await this.syncing;
  }
}
