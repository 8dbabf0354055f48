/**
 * Which routes a host needs so that workloads on different hosts reach each other, as Felix and
 * BIRD together give a Calico host:
 * - each other host's confirmed blocks, by the pool's encapsulation: VXLAN (via that host's tunnel
 *   address on our VXLAN device, with the neighbour and forwarding entries that make it reach the
 *   host), IPIP (via that host's address, on tunl0), or none (via that host's address, which must
 *   then be a neighbour on a shared link); `CrossSubnet` encapsulates only towards hosts outside
 *   this host's subnet;
 * - with the `bird` backend, routes to the blocks of pools that never encapsulate come from BIRD,
 *   not from here;
 * - an unreachable route for each of this host's own blocks, so that a packet to a free address of
 *   a local block is dropped here rather than sent towards a default route (the workloads' own /32
 *   and /128 routes are more specific and win);
 * - an address of one of this host's blocks that a workload on another host holds (asked for by
 *   name, or borrowed from a full pool) gets a /32 or /128 route to that host, the same way: other
 *   hosts send it here with the block, and this host passes it on.
 * The `none` backend routes nothing. Encapsulation is IPv4 only (as IPIP is; VXLAN for IPv6 pools
 * is refused when a pool is written).
 */
import { cidrContains, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { ADDRESS_BITS, parseAddress, formatAddress, type IpAddress } from '../net/address';
import type { EncapsulationMode, PoolEncapsulation } from '../ipam/pool';

export const ROUTING_BACKENDS = ['bird', 'vxlan', 'static', 'none'] as const;
export type RoutingBackend = (typeof ROUTING_BACKENDS)[number];

/** Calico's device names: one VXLAN device and the kernel's IPIP fallback device per host. */
export const VXLAN_DEVICE = 'vxlan.calico';
export const IPIP_DEVICE = 'tunl0';

export interface BlockAffinity {
  readonly host: string;
  readonly cidr: Cidr;
  readonly confirmed: boolean;
}

export interface HostAddresses {
  readonly name: string;
  /** As Node resources hold them: "10.0.0.11/24". */
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  /** The host's VXLAN tunnel endpoint (Node.spec.ipv4VXLANTunnelAddr, vxlanTunnelMACAddr). */
  readonly vxlanTunnelAddress?: string;
  readonly vxlanTunnelMac?: string;
}

/** An address of this host's blocks that a workload of another host holds. */
export interface LentAddress {
  readonly address: IpAddress;
  readonly host: string;
}

export type DesiredRoute =
  /** Straight to a neighbour on a shared link. */
  | { readonly kind: 'via'; readonly dst: Cidr; readonly via: IpAddress }
  /** Via the other host's tunnel address, on-link on the VXLAN device. */
  | { readonly kind: 'vxlan'; readonly dst: Cidr; readonly via: IpAddress }
  /** Via the other host's own address, on-link on tunl0. */
  | { readonly kind: 'ipip'; readonly dst: Cidr; readonly via: IpAddress }
  | { readonly kind: 'unreachable'; readonly dst: Cidr };

/** Another host's VXLAN tunnel endpoint: its tunnel address and MAC, and where to send to reach them. */
export interface VxlanPeer {
  readonly tunnelAddress: IpAddress;
  readonly mac: string;
  readonly hostAddress: IpAddress;
}

export interface RoutingPlan {
  readonly routes: readonly DesiredRoute[];
  readonly vxlanPeers: readonly VxlanPeer[];
  /** Which tunnel devices this host needs: some pool encapsulates that way. */
  readonly tunnels: { readonly vxlan: boolean; readonly ipip: boolean };
}

export interface RoutingInput {
  readonly self: string;
  readonly backend: RoutingBackend;
  readonly affinities: readonly BlockAffinity[];
  readonly hosts: readonly HostAddresses[];
  readonly pools: readonly PoolEncapsulation[];
  readonly lent?: readonly LentAddress[];
}

export function routeKey(route: DesiredRoute): string {
  switch (route.kind) {
    case 'unreachable':
      return `unreachable ${formatCidr(route.dst)}`;
    case 'via':
      return `${formatCidr(route.dst)} via ${formatAddress(route.via)}`;
    case 'vxlan':
      return `${formatCidr(route.dst)} via ${formatAddress(route.via)} dev ${VXLAN_DEVICE}`;
    case 'ipip':
      return `${formatCidr(route.dst)} via ${formatAddress(route.via)} dev ${IPIP_DEVICE}`;
  }
}

type Encapsulation = 'vxlan' | 'ipip' | 'none';

/** The routes and VXLAN ends that a change added or took away, since the last call. */
export interface RoutingChanges {
  readonly added: readonly DesiredRoute[];
  readonly removed: readonly DesiredRoute[];
  readonly peersAdded: readonly VxlanPeer[];
  readonly peersRemoved: readonly VxlanPeer[];
}

/** What one block or lent address is routed by: its route, and the VXLAN end it goes through. */
interface Routed {
  readonly route: DesiredRoute;
  readonly peer?: VxlanPeer;
}

/**
 * The routing plan, kept up to date one change at a time: a block claimed or a Node changed
 * recomputes only the routes of that block or that host (a change of this host or of the pools
 * recomputes all). `changes()` says what the changes since the last call did to the whole, so
 * the kernel is told exactly that.
 */
export class RoutePlanner {
  private readonly hosts = new Map<string, HostAddresses>();
  private pools4: readonly PoolEncapsulation[] = [];
  private localNets: Cidr[] = [];
  /** Routed things (a block by its affinity's id, a lent address by its text) and the host each goes to. */
  private readonly sources = new Map<string, { host: string; dst: Cidr; lent: boolean; confirmed: boolean }>();
  private readonly byHost = new Map<string, Set<string>>();
  private readonly routed = new Map<string, Routed>();
  /** Each wanted route and VXLAN end, counted by how many sources want it. */
  private readonly wanted = new Map<string, { route: DesiredRoute; count: number }>();
  private readonly peers = new Map<string, { peer: VxlanPeer; count: number }>();
  private dirty = new Set<string>();
  private allDirty = false;
  private pending = { added: new Map<string, DesiredRoute>(), removed: new Map<string, DesiredRoute>(), peersAdded: new Map<string, VxlanPeer>(), peersRemoved: new Map<string, VxlanPeer>() };

  constructor(
    private readonly self: string,
    private readonly backend: RoutingBackend,
  ) {}

  setHost(name: string, host: HostAddresses | undefined): void {
    if (host) this.hosts.set(name, host);
    else this.hosts.delete(name);
    if (name === this.self) {
      this.localNets = [parseNet(host?.ipv4Address), parseNet(host?.ipv6Address)].filter((n): n is Cidr => n !== undefined);
      this.allDirty = true;
    }
    for (const id of this.byHost.get(name) ?? []) this.dirty.add(id);
  }

  setPools(pools: readonly PoolEncapsulation[]): void {
    this.pools4 = pools.filter((p) => p.cidr.version === 4);
    this.allDirty = true;
  }

  /** A block affinity, by its id; undefined when it is gone. */
  setAffinity(id: string, affinity: BlockAffinity | undefined): void {
    this.setSource(id, affinity && { host: affinity.host, dst: affinity.cidr, lent: false, confirmed: affinity.confirmed });
  }

  /** The addresses of this host's blocks that other hosts' workloads hold, all of them. */
  setLent(lent: readonly LentAddress[]): void {
    const ids = new Set<string>();
    for (const { address, host } of lent) {
      const id = `lent ${formatAddress(address)}`;
      ids.add(id);
      this.setSource(id, { host, dst: { version: address.version, network: address.value, prefix: ADDRESS_BITS[address.version] }, lent: true, confirmed: true });
    }
    for (const [id, source] of this.sources) if (source.lent && !ids.has(id)) this.setSource(id, undefined);
  }

  /** Which tunnel devices this host needs: some pool encapsulates that way. */
  get tunnels(): RoutingPlan['tunnels'] {
    if (this.backend === 'none') return { vxlan: false, ipip: false };
    return { vxlan: this.pools4.some((p) => p.vxlanMode !== 'Never'), ipip: this.pools4.some((p) => p.ipipMode !== 'Never') };
  }

  /** The whole plan as it stands (recomputing what changed first). */
  plan(): RoutingPlan {
    this.recompute();
    return { routes: [...this.wanted.values()].map((w) => w.route), vxlanPeers: [...this.peers.values()].map((p) => p.peer), tunnels: this.tunnels };
  }

  /** What the changes since the last call did to the plan. */
  changes(): RoutingChanges {
    this.recompute();
    const { added, removed, peersAdded, peersRemoved } = this.pending;
    this.pending = { added: new Map(), removed: new Map(), peersAdded: new Map(), peersRemoved: new Map() };
    return { added: [...added.values()], removed: [...removed.values()], peersAdded: [...peersAdded.values()], peersRemoved: [...peersRemoved.values()] };
  }

  private setSource(id: string, source: { host: string; dst: Cidr; lent: boolean; confirmed: boolean } | undefined): void {
    const before = this.sources.get(id);
    if (before) this.byHost.get(before.host)?.delete(id);
    if (source) {
      this.sources.set(id, source);
      let ids = this.byHost.get(source.host);
      if (!ids) this.byHost.set(source.host, (ids = new Set()));
      ids.add(id);
    } else {
      this.sources.delete(id);
    }
    this.dirty.add(id);
  }

  private recompute(): void {
    const ids = this.allDirty ? new Set([...this.routed.keys(), ...this.sources.keys()]) : this.dirty;
    for (const id of ids) {
      const source = this.sources.get(id);
      const next = source ? this.routeOf(source) : undefined;
      const previous = this.routed.get(id);
      if (previous && next && routeKey(previous.route) === routeKey(next.route) && peerKey(previous.peer) === peerKey(next.peer)) continue;
      if (previous) this.unwant(previous);
      if (next) this.want(next);
      if (next) this.routed.set(id, next);
      else this.routed.delete(id);
    }
    this.dirty = new Set();
    this.allDirty = false;
  }

  private want({ route, peer }: Routed): void {
    const key = routeKey(route);
    const held = this.wanted.get(key);
    if (held) held.count++;
    else {
      this.wanted.set(key, { route, count: 1 });
      if (!this.pending.removed.delete(key)) this.pending.added.set(key, route);
    }
    if (!peer) return;
    const pk = peerKey(peer)!;
    const heldPeer = this.peers.get(pk);
    if (heldPeer) heldPeer.count++;
    else {
      this.peers.set(pk, { peer, count: 1 });
      if (!this.pending.peersRemoved.delete(pk)) this.pending.peersAdded.set(pk, peer);
    }
  }

  private unwant({ route, peer }: Routed): void {
    const key = routeKey(route);
    const held = this.wanted.get(key)!;
    if (--held.count === 0) {
      this.wanted.delete(key);
      if (!this.pending.added.delete(key)) this.pending.removed.set(key, route);
    }
    if (!peer) return;
    const pk = peerKey(peer)!;
    const heldPeer = this.peers.get(pk)!;
    if (--heldPeer.count === 0) {
      this.peers.delete(pk);
      if (!this.pending.peersAdded.delete(pk)) this.pending.peersRemoved.set(pk, peer);
    }
  }

  private routeOf(source: { host: string; dst: Cidr; lent: boolean; confirmed: boolean }): Routed | undefined {
    if (this.backend === 'none' || !source.confirmed) return undefined;
    if (source.host === this.self) return source.lent ? undefined : { route: { kind: 'unreachable', dst: source.dst } };
    return this.routeTo(source.host, source.dst, source.lent);
  }

  /** `lent`: an address of our block that `host` holds (BIRD exports blocks, never such addresses: ours to route). */
  private routeTo(host: string, dst: Cidr, lent: boolean): Routed | undefined {
    const peer = this.hosts.get(host);
    const address = hostAddress(dst.version === 4 ? peer?.ipv4Address : peer?.ipv6Address);
    if (!peer || !address) return undefined;
    const pool = this.pools4.find((p) => cidrContains(p.cidr, { version: dst.version, value: dst.network }));
    const encapsulation = this.encapsulationTo(pool, address);
    if (encapsulation === 'vxlan') {
      const tunnelAddress = hostAddress(peer.vxlanTunnelAddress);
      // A host that has not yet set up its tunnel end is routed once it has.
      if (!tunnelAddress || !peer.vxlanTunnelMac) return undefined;
      return { route: { kind: 'vxlan', dst, via: tunnelAddress }, peer: { tunnelAddress, mac: peer.vxlanTunnelMac, hostAddress: address } };
    }
    if (encapsulation === 'ipip') return { route: { kind: 'ipip', dst, via: address } };
    // With BIRD, the blocks of a pool that never encapsulates are BIRD's to route; those of one
    // that does only across subnets are ours within the subnet too.
    if ((this.backend !== 'bird' || lent || (pool !== undefined && encapsulates(pool))) && this.isNeighbour(address)) return { route: { kind: 'via', dst, via: address } };
    return undefined;
  }

  private encapsulationTo(pool: PoolEncapsulation | undefined, peerAddress: IpAddress): Encapsulation {
    if (!pool) return 'none';
    const applies = (mode: EncapsulationMode) => mode === 'Always' || (mode === 'CrossSubnet' && !this.isNeighbour(peerAddress));
    if (applies(pool.vxlanMode)) return 'vxlan';
    if (applies(pool.ipipMode)) return 'ipip';
    return 'none';
  }

  /** In this host's own subnet: reachable without a routing protocol or a tunnel. */
  private isNeighbour(address: IpAddress): boolean {
    return this.localNets.some((net) => cidrContains(net, address));
  }
}

/** The whole plan from scratch. */
export function routingPlan(input: RoutingInput): RoutingPlan {
  const planner = new RoutePlanner(input.self, input.backend);
  for (const host of input.hosts) planner.setHost(host.name, host);
  planner.setPools(input.pools);
  input.affinities.forEach((affinity, i) => planner.setAffinity(String(i), affinity));
  planner.setLent(input.lent ?? []);
  return planner.plan();
}

function peerKey(peer: VxlanPeer | undefined): string | undefined {
  return peer && `${formatAddress(peer.tunnelAddress)} ${peer.mac} ${formatAddress(peer.hostAddress)}`;
}

function encapsulates(pool: PoolEncapsulation): boolean {
  return pool.vxlanMode !== 'Never' || pool.ipipMode !== 'Never';
}

function hostAddress(text: string | undefined): IpAddress | undefined {
  if (!text) return undefined;
  try {
    return parseAddress(text.split('/')[0]!);
  } catch {
    return undefined;
  }
}

function parseNet(text: string | undefined): Cidr | undefined {
  if (!text || !text.includes('/')) return undefined;
  try {
    return parseCidr(text, 'node address', true);
  } catch {
    return undefined;
  }
}
