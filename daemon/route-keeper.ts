/**
 * Registers this host as a Node (with the address other hosts reach it on) and keeps its routes to
 * every host's blocks, and its tunnel devices, in step with etcd (shared/routing/desired-routes.ts
 * says which): a watch on affinities, nodes and pools triggers a resync soon after any change, and
 * a periodic resync repairs anything a lost watch event or a manual edit did. etcd being away is
 * retried with backoff; the daemon's other jobs never wait on it.
 */
import { MalformedDataError, decodeAffinity, decodeBlock, decodeEach, decodeResource, type Datastore, type Entry, type Resource, type WatchHandle } from '../shared/datastore';
import { addressAt, formatCidr, parseAddress, parseCidr, type Cidr, type IpAddress } from '../shared/net';
import { TunnelUnsupportedError } from '../shared/dataplane/errors';
import { detectHostAddresses, enableForwarding, syncRoutes } from '../shared/dataplane/routes';
import { linkHolding, syncIpipDevice, syncVxlanDevice } from '../shared/dataplane/tunnels';
import { ENCAPSULATION_OVERHEAD } from '../shared/routing/encapsulations';
import { messageOf } from '../shared/errors';
import type { Ipam } from '../shared/ipam/ipam';
import { encapsulationOf } from '../shared/ipam/pool';
import type { Logger } from '../shared/log';
import { recordWorkloadMtu } from '../shared/routing/workload-mtu';
import { routingPlan, type BlockAffinity, type DesiredRoute, type HostAddresses, type LentAddress, type RoutingBackend, type RoutingPlan } from '../shared/routing/desired-routes';
import { BirdKeeper } from './bird-keeper';
import { RoutingStatusReporter } from './routing-status';
import { keepTunnelEnds, type EncapsulatedPool, type TunnelEnds } from './tunnel-ends';

const DEBOUNCE_MS = 100;

type NodeBgpAddresses = { ipv4Address?: string; ipv6Address?: string };
const RESYNC_MS = 30_000;
const RETRY_MS = { first: 1000, max: 30_000 };

export interface RouteKeeperSettings {
  readonly node: string;
  /** "auto" (detect), "none" (do not register), or "a.b.c.d/len". */
  readonly nodeAddress: string;
  readonly backend: RoutingBackend;
  /** Where BIRD's configuration and control socket go (the bird backend). */
  readonly birdDir: string;
  /** Where the workloads' MTU is recorded for the plugins. */
  readonly mtuFile: string;
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
  /** The IPIP tunnel address this host last had, to take off tunl0 when no pool needs it. */
  private ipipAddress: IpAddress | undefined;
  private readonly bird: BirdKeeper | undefined;
  private readonly status: RoutingStatusReporter;
  private recordedMtu: number | undefined;
  /** This host's addresses, as registered on its Node (none with --node-address none). */
  private addresses: NodeBgpAddresses | undefined;

  constructor(
    private readonly datastore: () => Promise<{ ds: Datastore; ipam: Ipam }>,
    private readonly settings: RouteKeeperSettings,
    private readonly log: Logger,
  ) {
    this.bird = settings.backend === 'bird' ? new BirdKeeper(settings.node, settings.birdDir, log.with({ backend: 'bird' })) : undefined;
    this.status = new RoutingStatusReporter(async () => (await datastore()).ds, settings.node, settings.backend, this.bird, log);
  }

  /** Starts in the background; failures are logged and retried. */
  start(): void {
    void this.run(RETRY_MS.first);
    this.status.start();
  }

  private async run(retryIn: number): Promise<void> {
    if (this.stopped) return;
    try {
      await enableForwarding();
      const { ds } = await this.datastore();
      await this.register(ds);
      const resync = () => this.schedule(DEBOUNCE_MS);
      this.watches = [
        await ds.kv.watchPrefix(ds.keys.affinitiesPrefix(), resync),
        await ds.kv.watchPrefix(ds.keys.resourcePrefix('Node'), resync),
        // A pool's encapsulation decides how its blocks are routed.
        await ds.kv.watchPrefix(ds.keys.resourcePrefix('IPPool'), resync),
        ...(this.bird ? await Promise.all(BirdKeeper.watchedPrefixes(ds).map((prefix) => ds.kv.watchPrefix(prefix, resync))) : []),
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
    this.addresses = { ...(detected.ipv4 ? { ipv4Address: detected.ipv4 } : {}), ...(detected.ipv6 ? { ipv6Address: detected.ipv6 } : {}) };
    await this.assertAddresses(ds, await ds.resources.get('Node', this.settings.node));
    this.log.info('node registered', { ipv4: this.addresses.ipv4Address, ipv6: this.addresses.ipv6Address });
  }

  /**
   * Makes this host's Node say this host's addresses. Run at start and on every sync (the Node is
   * watched): whoever else wrote them, traffic to this host's workloads follows them.
   */
  private async assertAddresses(ds: Datastore, existing: Resource<'Node'> | undefined): Promise<void> {
    const bgp = this.addresses;
    if (!bgp) return;
    if (!existing) {
      await ds.resources.create({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name: this.settings.node }, spec: { bgp } });
      return;
    }
    if (existing.spec.bgp?.ipv4Address === bgp.ipv4Address && existing.spec.bgp?.ipv6Address === bgp.ipv6Address) return;
    if (existing.spec.bgp?.ipv4Address !== undefined || existing.spec.bgp?.ipv6Address !== undefined) {
      this.log.warning('this node\'s addresses were changed by someone else; writing them back', { found: `${existing.spec.bgp?.ipv4Address ?? ''} ${existing.spec.bgp?.ipv6Address ?? ''}`.trim() });
    }
    // The rest of bgp (AS number, route reflector, tunnel address) is the operator's or the tunnels'.
    const { ipv4Address: _v4, ipv6Address: _v6, ...kept } = existing.spec.bgp ?? {};
    await ds.resources.update({ ...existing, spec: { ...existing.spec, bgp: { ...kept, ...bgp } } });
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
      const { ds, ipam } = await this.datastore();
      // A malformed record is skipped alone (and logged once, by the daemon): the rest is routed.
      const [affinityEntries, nodes, poolEntries] = await Promise.all([ds.kv.list(ds.keys.affinitiesPrefix()), ds.resources.list('Node', undefined, { skipMalformed: true }), ds.kv.list(ds.keys.resourcePrefix('IPPool'))]);
      const affinities = decodeEach(affinityEntries, (entry): BlockAffinity[] => {
        const named = ds.keys.affinityOf(entry.key);
        return named ? [{ host: named.host, cidr: named.cidr, confirmed: decodeAffinity(entry.key, entry.value).state === 'confirmed' }] : [];
      }).flat();
      const hosts: HostAddresses[] = nodes.map((n) => ({
        name: n.metadata.name,
        ipv4Address: n.spec.bgp?.ipv4Address,
        ipv6Address: n.spec.bgp?.ipv6Address,
        vxlanTunnelAddress: n.spec.ipv4VXLANTunnelAddr,
        vxlanTunnelMac: n.spec.vxlanTunnelMACAddr,
      }));
      await this.assertAddresses(ds, nodes.find((n) => n.metadata.name === this.settings.node)).catch((err: unknown) => this.log.warning('cannot write this node\'s addresses back yet', { error: messageOf(err) }));
      const own = affinities.filter((a) => a.host === this.settings.node && a.confirmed).map((a) => a.cidr);
      this.ownBlocks = new Set(own.map(formatCidr));
      const pools = this.pools(poolEntries);
      // BIRD first: with the bird backend, a new block reaches the other hosts through it.
      await this.bird?.sync(ds, { nodes, pools, ownBlocks: own });
      const plan = routingPlan({ self: this.settings.node, backend: this.settings.backend, affinities, hosts, pools, lent: await this.lentAddresses(ds, own) });
      // Without a tunnel end (a pool full, say) its tunnel's routes wait; the others go ahead.
      const ends = await keepTunnelEnds(ds, ipam, this.settings.node, pools, plan.tunnels).catch((err: unknown): TunnelEnds => {
        this.log.warning('cannot keep this host\'s tunnel addresses; will retry', { error: messageOf(err) });
        return {};
      });
      const self = hosts.find((h) => h.name === this.settings.node);
      const unusable = await this.syncTunnels(plan, ends, self?.ipv4Address);
      const routes = plan.routes.filter((r: DesiredRoute) => !unusable.has(r.kind));
      const result = await syncRoutes(routes);
      if (result.added || result.removed) this.log.info('routes updated', { added: result.added, removed: result.removed });
      if (result.failure) this.log.warning('some routes could not be made', { error: result.failure });
    } catch (err) {
      this.log.warning('route sync failed; will retry', { error: messageOf(err) });
    } finally {
      this.schedule(RESYNC_MS);
    }
  }

  /** The pools' encapsulation; a malformed pool (written past calicoctl) is skipped alone. */
  private pools(entries: readonly Entry[]): EncapsulatedPool[] {
    return decodeEach(entries, (entry) => {
      const pool = decodeResource('IPPool', entry);
      try {
        return { ...encapsulationOf(parseCidr(pool.spec.cidr, 'spec.cidr'), pool.spec), disabled: pool.spec.disabled === true };
      } catch (err) {
        throw new MalformedDataError(entry.key, messageOf(err));
      }
    });
  }

  /**
   * The tunnel devices the plan needs, set up (each with MTU below its outer link's by its
   * overhead), and those it does not, removed. Returns the route kinds that cannot be made here: a
   * tunnel without its end (yet) is left as it is, and its routes wait.
   */
  private async syncTunnels(plan: RoutingPlan, ends: TunnelEnds, ownAddress: string | undefined): Promise<Set<DesiredRoute['kind']>> {
    const unusable = new Set<DesiredRoute['kind']>();
    const local = ownAddress ? parseAddress(ownAddress.split('/')[0]!) : undefined;
    const outer = local ? await linkHolding(local) : undefined;
    const tunnel = async (kind: 'vxlan' | 'ipip', ready: boolean, apply: (mtu: number | undefined) => Promise<number>) => {
      if (plan.tunnels[kind] && (!ready || !outer)) {
        if (!outer) this.log.warning(`no ${kind} tunnel: this host has no registered IPv4 address on a link`, { address: ownAddress });
        unusable.add(kind);
        return;
      }
      try {
        const changed = await apply(plan.tunnels[kind] ? outer!.mtu - ENCAPSULATION_OVERHEAD[kind] : undefined);
        if (changed) this.log.info(`${kind} tunnel updated`, { changes: changed });
      } catch (err) {
        unusable.add(kind);
        if (err instanceof TunnelUnsupportedError) this.log.error(`${kind} routes left out`, { error: err.message });
        else throw err;
      }
    };
    this.recordMtu(outer?.mtu, plan);
    await tunnel('vxlan', ends.vxlan !== undefined, (mtu) =>
      syncVxlanDevice(mtu !== undefined ? { local: local!, tunnelAddress: ends.vxlan!.address, mac: ends.vxlan!.mac, mtu } : undefined, plan.vxlanPeers));
    await tunnel('ipip', ends.ipip !== undefined, async (mtu) => {
      const changed = await syncIpipDevice(mtu !== undefined ? { tunnelAddress: ends.ipip!, mtu } : undefined, this.ipipAddress);
      this.ipipAddress = ends.ipip;
      return changed;
    });
    return unusable;
  }

  /** The workloads' MTU: the outer link's, less the largest encapsulation a pool asks for. */
  private recordMtu(outerMtu: number | undefined, plan: RoutingPlan): void {
    if (outerMtu === undefined) return;
    const overhead = Math.max(0, ...(['vxlan', 'ipip'] as const).filter((k) => plan.tunnels[k]).map((k) => ENCAPSULATION_OVERHEAD[k]));
    const mtu = outerMtu - overhead;
    if (mtu === this.recordedMtu) return;
    try {
      recordWorkloadMtu(this.settings.mtuFile, mtu);
      this.recordedMtu = mtu;
      this.log.info('workload MTU recorded', { mtu, file: this.settings.mtuFile });
    } catch (err) {
      this.log.warning('cannot record the workload MTU', { file: this.settings.mtuFile, error: messageOf(err) });
    }
  }

  /** Addresses of this host's blocks held by other hosts' workloads (only this host's blocks are read). */
  private async lentAddresses(ds: Datastore, blocks: readonly Cidr[]): Promise<LentAddress[]> {
    const lent: LentAddress[] = [];
    const entries = await ds.kv.readMany(blocks.map((cidr) => ({ key: ds.keys.block(cidr) })));
    const found = entries.flatMap(([entry], i) => (entry ? [{ entry, cidr: blocks[i]! }] : []));
    for (const { block, cidr } of decodeEach(found, ({ entry, cidr }) => ({ block: decodeBlock(entry.key, entry.value, cidr), cidr }))) {
      block.allocations.forEach((attribute, ordinal) => {
        const host = attribute === null ? undefined : block.attributes[attribute]?.secondary?.node;
        if (host && host !== this.settings.node) lent.push({ address: addressAt(cidr, BigInt(ordinal)), host });
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
    this.status.stop();
    await this.closeWatches();
    await this.syncing;
    await this.bird?.stop();
  }
}
