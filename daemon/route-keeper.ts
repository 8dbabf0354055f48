/**
 * Registers this host as a Node (with the address other hosts reach it on) and keeps its routes to
 * every host's blocks, its tunnel devices and BIRD's configuration in step with the cluster view
 * (shared/cluster-view), one delta at a time:
 * - a block claimed or released anywhere is one route added or removed (with the bird backend,
 *   usually none: BIRD learns it over BGP); the kernel is told exactly that, as the daemon's own
 *   record of what it programmed (the route planner) says, without reading its routes;
 * - a Node's change recomputes that host's routes and VXLAN end only;
 * - BIRD's configuration is rendered again only when Nodes, pools, BGP resources or this host's
 *   own blocks change, and BIRD hears of it only when the text differs;
 * - this host's tunnel ends and devices are looked at only when pools or its own Node change.
 * A repair compares everything with the kernel: at start, after a failure, when a tunnel becomes
 * usable, and periodically (jittered per host), which also catches manual edits. etcd being away
 * is retried with backoff; the daemon's other jobs never wait on it.
 */
import type { ClusterDelta, ClusterView } from '../shared/cluster-view/cluster-view';
import { affinityId, type ViewPool } from '../shared/cluster-view/sections';
import { decodeBlock, decodeEach, type Datastore, type Resource, type WatchHandle } from '../shared/datastore';
import { addressAt, formatCidr, parseAddress, type Cidr, type IpAddress } from '../shared/net';
import { TunnelUnsupportedError } from '../shared/dataplane/errors';
import { detectHostAddresses, enableForwarding, syncRoutes, updateRoutes, type RouteUpdate } from '../shared/dataplane/routes';
import { linkHolding, syncIpipDevice, syncVxlanDevice, updateVxlanPeers } from '../shared/dataplane/tunnels';
import { ENCAPSULATION_OVERHEAD } from '../shared/routing/encapsulations';
import { messageOf } from '../shared/errors';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { recordWorkloadMtu } from '../shared/routing/workload-mtu';
import { RoutePlanner, type DesiredRoute, type HostAddresses, type LentAddress, type RoutingBackend } from '../shared/routing/desired-routes';
import { BirdKeeper } from './bird-keeper';
import { RoutingStatusReporter } from './routing-status';
import { keepTunnelEnds, type TunnelEnds } from './tunnel-ends';

/** Changes that arrive within this long of each other are programmed together. */
const BATCH_MS = 20;
const RETRY_MS = { first: 1000, max: 30_000 };

type NodeBgpAddresses = { ipv4Address?: string; ipv6Address?: string };
type TunnelKind = 'vxlan' | 'ipip';

/** What the next round has to look at. */
interface Needs {
  routes: boolean;
  /** This host's Node changed: its addresses are ours to keep. */
  self: boolean;
  tunnels: boolean;
  bird: boolean;
  /** This host's blocks changed: which of their addresses other hosts hold. */
  lent: boolean;
  /** Compare everything with the kernel. */
  repair: boolean;
}

const NOTHING: Readonly<Needs> = { routes: false, self: false, tunnels: false, bird: false, lent: false, repair: false };

export interface RouteKeeperSettings {
  readonly node: string;
  /** "auto" (detect), "none" (do not register), or "a.b.c.d/len". */
  readonly nodeAddress: string;
  readonly backend: RoutingBackend;
  /** Where BIRD's configuration and control socket go (the bird backend). */
  readonly birdDir: string;
  /** Where the workloads' MTU is recorded for the plugins. */
  readonly mtuFile: string;
  /** How often everything is compared with the kernel (each host at its own moment within ±20%). */
  readonly repairMs: number;
}

export class RouteKeeper {
  private readonly planner: RoutePlanner;
  private readonly bird: BirdKeeper | undefined;
  private readonly status: RoutingStatusReporter;
  private needs: Needs = { ...NOTHING };
  private timer: NodeJS.Timeout | undefined;
  /** When the pending round is due: a later request never postpones an earlier one. */
  private dueAt = Infinity;
  private repairTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private working: Promise<void> = Promise.resolve();
  /**
   * A watch on each of this host's confirmed blocks (by CIDR): a change to one of them may lend
   * an address. Only these blocks are followed, not every block of the cluster.
   */
  private readonly ownBlockWatches = new Map<string, Promise<WatchHandle | undefined>>();
  /** Tunnels whose routes cannot be made here (no tunnel end yet, or the kernel lacks it). */
  private unusable = new Set<TunnelKind>();
  /** The IPIP tunnel address this host last had, to take off tunl0 when no pool needs it. */
  private ipipAddress: IpAddress | undefined;
  private recordedMtu: number | undefined;
  /** This host's addresses, as registered on its Node (none with --node-address none). */
  private addresses: NodeBgpAddresses | undefined;

  constructor(
    private readonly datastore: () => Promise<{ ds: Datastore; ipam: Ipam }>,
    private readonly view: ClusterView,
    private readonly settings: RouteKeeperSettings,
    private readonly log: Logger,
  ) {
    this.planner = new RoutePlanner(settings.node, settings.backend);
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
      if (this.settings.nodeAddress !== 'none') {
        const detected = this.settings.nodeAddress === 'auto' ? await detectHostAddresses() : { ipv4: this.settings.nodeAddress };
        this.addresses = { ...(detected.ipv4 ? { ipv4Address: detected.ipv4 } : {}), ...(detected.ipv6 ? { ipv6Address: detected.ipv6 } : {}) };
      }
      await this.view.ready;
      if (this.stopped) return;
      // Everything the view holds now, then every change after it (in the same turn: none is missed).
      for (const node of this.view.all('node')) this.planner.setHost(node.metadata.name, hostAddressesOf(node));
      this.planner.setPools([...this.view.all('pool')]);
      for (const affinity of this.view.all('affinity')) this.onDelta({ kind: 'affinity', id: affinityId(affinity.host, affinity.cidr), before: undefined, after: affinity });
      this.view.subscribe((delta) => this.onDelta(delta));
      this.request({ self: true, repair: true }, 0);
      if (this.addresses) this.log.info('node registered', { ipv4: this.addresses.ipv4Address, ipv6: this.addresses.ipv6Address });
    } catch (err) {
      this.log.warning('cannot keep routes yet; retrying', { error: messageOf(err), retryInMs: retryIn });
      setTimeout(() => void this.run(Math.min(retryIn * 2, RETRY_MS.max)), retryIn).unref();
    }
  }

  private onDelta(delta: ClusterDelta): void {
    switch (delta.kind) {
      case 'pool':
        this.planner.setPools([...this.view.all('pool')]);
        return this.request({ routes: true, tunnels: true, bird: true });
      case 'node': {
        this.planner.setHost(delta.id, delta.after && hostAddressesOf(delta.after));
        const self = delta.id === this.settings.node;
        return this.request({ routes: true, bird: true, self, tunnels: self });
      }
      case 'affinity': {
        this.planner.setAffinity(delta.id, delta.after);
        const own = (delta.after ?? delta.before)!;
        if (own.host !== this.settings.node) return this.request({ routes: true });
        if (!delta.after?.confirmed) this.unwatchOwnBlock(own.cidr);
        return this.request({ routes: true, lent: true, bird: true });
      }
      case 'bgpConfiguration':
      case 'bgpPeer':
        return this.request({ bird: true });
    }
  }

  /** The host's confirmed blocks now, each watched (a watch that could not be made is tried again here). */
  private watchedOwnBlocks(ds: Datastore): Cidr[] {
    const blocks = this.ownBlocks();
    for (const cidr of blocks) {
      const text = formatCidr(cidr);
      if (this.ownBlockWatches.has(text)) continue;
      const lost = () => {
        this.ownBlockWatches.delete(text);
        this.request({ lent: true }, RETRY_MS.first);
      };
      this.ownBlockWatches.set(text, ds.kv.watchKey(ds.keys.block(cidr), () => this.request({ lent: true }), undefined, lost).catch((err: unknown) => {
        this.log.warning('cannot follow one of this host\'s blocks yet', { block: text, error: messageOf(err) });
        lost();
        return undefined;
      }));
    }
    return blocks;
  }

  /** This host's confirmed blocks, as the view has them. */
  private ownBlocks(): Cidr[] {
    return [...this.view.affinitiesOf(this.settings.node)].filter((a) => a.confirmed).map((a) => a.cidr);
  }

  private unwatchOwnBlock(cidr: Cidr): void {
    const text = formatCidr(cidr);
    const watch = this.ownBlockWatches.get(text);
    this.ownBlockWatches.delete(text);
    void watch?.then((w) => w?.close());
  }

  /** Asks for a round that looks at `needs`, within `delay` at the latest. */
  private request(needs: Partial<Needs>, delay = BATCH_MS): void {
    for (const [k, v] of Object.entries(needs) as [keyof Needs, boolean][]) if (v) this.needs[k] = true;
    if (this.stopped || Date.now() + delay >= this.dueAt) return;
    clearTimeout(this.timer);
    this.dueAt = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.dueAt = Infinity;
      this.working = this.working.then(() => this.round());
    }, delay);
  }

  private async round(): Promise<void> {
    const needs = this.needs;
    this.needs = { ...NOTHING };
    if (needs.repair) this.scheduleRepair();
    try {
      const { ds, ipam } = await this.datastore();
      const self = this.view.get('node', this.settings.node);
      if (needs.self) {
        await this.assertAddresses(ds, self).catch((err: unknown) => {
          this.log.warning('cannot write this node\'s addresses back yet', { error: messageOf(err) });
          this.request({ self: true }, RETRY_MS.first);
        });
      }
      if (needs.lent || needs.repair) this.planner.setLent(await this.lentAddresses(ds));
      // BIRD first: with the bird backend, a new block reaches the other hosts through it.
      if (needs.bird || needs.repair) await this.bird?.sync(this.birdInputs());
      const tunnelsChanged = needs.tunnels || needs.repair ? await this.keepTunnels(ds, ipam, self) : false;
      const changes = this.planner.changes();
      const usable = (route: DesiredRoute) => route.kind === 'via' || route.kind === 'unreachable' || !this.unusable.has(route.kind);
      let result: RouteUpdate;
      if (needs.repair || tunnelsChanged) {
        result = await syncRoutes(this.planner.plan().routes.filter(usable));
      } else {
        result = await updateRoutes(changes.added.filter(usable), changes.removed.filter(usable));
        if (!this.unusable.has('vxlan') && changes.peersAdded.length + changes.peersRemoved.length > 0) await updateVxlanPeers(changes.peersAdded, changes.peersRemoved);
      }
      if (result.added || result.removed) this.log.info('routes updated', { added: result.added, removed: result.removed });
      if (result.failure) {
        this.log.warning('some routes could not be made; repairing', { error: result.failure });
        this.request({ repair: true }, RETRY_MS.first);
      }
    } catch (err) {
      // What the kernel holds is no longer known for sure: the next round compares it all.
      this.log.warning('route sync failed; will retry', { error: messageOf(err) });
      this.request({ ...needs, repair: true }, RETRY_MS.first);
    }
  }

  private scheduleRepair(): void {
    clearTimeout(this.repairTimer);
    if (this.stopped || this.settings.repairMs <= 0) return;
    this.repairTimer = setTimeout(() => this.request({ repair: true }, 0), this.settings.repairMs * (0.8 + 0.4 * Math.random()));
    this.repairTimer.unref();
  }

  /**
   * Makes this host's Node say this host's addresses, whoever else wrote them: traffic to this
   * host's workloads follows them. `existing` is the Node as the view has it.
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

  private birdInputs() {
    return {
      nodes: [...this.view.all('node')],
      pools: [...this.view.all('pool')],
      ownBlocks: this.ownBlocks(),
      configuration: this.view.get('bgpConfiguration', 'default'),
      peers: [...this.view.all('bgpPeer')],
    };
  }

  /**
   * This host's tunnel ends and devices as the pools need them; whether the tunnels usable for
   * routes changed (their routes are then compared with the kernel's).
   */
  private async keepTunnels(ds: Datastore, ipam: Ipam, self: Resource<'Node'> | undefined): Promise<boolean> {
    const pools: ViewPool[] = [...this.view.all('pool')];
    const tunnels = this.planner.tunnels;
    // Without a tunnel end (a pool full, say) its tunnel's routes wait; the others go ahead.
    const ends = await keepTunnelEnds(ds, ipam, this.settings.node, self, pools, tunnels).catch((err: unknown): TunnelEnds => {
      this.log.warning('cannot keep this host\'s tunnel addresses; will retry', { error: messageOf(err) });
      this.request({ tunnels: true }, RETRY_MS.first);
      return {};
    });
    const before = [...this.unusable].sort().join();
    this.unusable = await this.syncTunnels(tunnels, ends, self?.spec.bgp?.ipv4Address);
    return [...this.unusable].sort().join() !== before;
  }

  /**
   * The tunnel devices the plan needs, set up (each with MTU below its outer link's by its
   * overhead), and those it does not, removed. Returns the tunnels whose routes cannot be made
   * here: a tunnel without its end (yet) is left as it is, and its routes wait.
   */
  private async syncTunnels(needed: { vxlan: boolean; ipip: boolean }, ends: TunnelEnds, ownAddress: string | undefined): Promise<Set<TunnelKind>> {
    const unusable = new Set<TunnelKind>();
    const local = ownAddress ? parseAddress(ownAddress.split('/')[0]!) : undefined;
    const outer = local ? await linkHolding(local) : undefined;
    const tunnel = async (kind: TunnelKind, ready: boolean, apply: (mtu: number | undefined) => Promise<number>) => {
      if (needed[kind] && (!ready || !outer)) {
        if (!outer) this.log.warning(`no ${kind} tunnel: this host has no registered IPv4 address on a link`, { address: ownAddress });
        unusable.add(kind);
        return;
      }
      try {
        const changed = await apply(needed[kind] ? outer!.mtu - ENCAPSULATION_OVERHEAD[kind] : undefined);
        if (changed) this.log.info(`${kind} tunnel updated`, { changes: changed });
      } catch (err) {
        unusable.add(kind);
        if (err instanceof TunnelUnsupportedError) this.log.error(`${kind} routes left out`, { error: err.message });
        else throw err;
      }
    };
    this.recordMtu(outer?.mtu, needed);
    await tunnel('vxlan', ends.vxlan !== undefined, (mtu) =>
      syncVxlanDevice(mtu !== undefined ? { local: local!, tunnelAddress: ends.vxlan!.address, mac: ends.vxlan!.mac, mtu } : undefined, this.planner.plan().vxlanPeers));
    await tunnel('ipip', ends.ipip !== undefined, async (mtu) => {
      const changed = await syncIpipDevice(mtu !== undefined ? { tunnelAddress: ends.ipip!, mtu } : undefined, this.ipipAddress);
      this.ipipAddress = ends.ipip;
      return changed;
    });
    return unusable;
  }

  /** The workloads' MTU: the outer link's, less the largest encapsulation a pool asks for. */
  private recordMtu(outerMtu: number | undefined, needed: { vxlan: boolean; ipip: boolean }): void {
    if (outerMtu === undefined) return;
    const overhead = Math.max(0, ...(['vxlan', 'ipip'] as const).filter((k) => needed[k]).map((k) => ENCAPSULATION_OVERHEAD[k]));
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
  private async lentAddresses(ds: Datastore): Promise<LentAddress[]> {
    const blocks = this.watchedOwnBlocks(ds);
    // Read after the watches exist: a change from now on is not missed.
    await Promise.all(this.ownBlockWatches.values());
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
    const watches = [...this.ownBlockWatches.values()];
    this.ownBlockWatches.clear();
    await Promise.allSettled(watches.map(async (w) => (await w)?.close()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.repairTimer);
    this.status.stop();
    await this.working;
    await this.closeWatches();
    await this.bird?.stop();
  }
}

/** What routing needs of a Node. */
function hostAddressesOf(node: Resource<'Node'>): HostAddresses {
  return {
    name: node.metadata.name,
    ipv4Address: node.spec.bgp?.ipv4Address,
    ipv6Address: node.spec.bgp?.ipv6Address,
    vxlanTunnelAddress: node.spec.ipv4VXLANTunnelAddr,
    vxlanTunnelMac: node.spec.vxlanTunnelMACAddr,
  };
}
