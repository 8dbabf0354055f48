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

export function routingPlan(input: RoutingInput): RoutingPlan {
  const { self, backend } = input;
  if (backend === 'none') return { routes: [], vxlanPeers: [], tunnels: { vxlan: false, ipip: false } };
  const hosts = new Map(input.hosts.map((h) => [h.name, h]));
  const selfHost = hosts.get(self);
  const localNets = [parseNet(selfHost?.ipv4Address), parseNet(selfHost?.ipv6Address)].filter((n): n is Cidr => n !== undefined);
  const pools4 = input.pools.filter((p) => p.cidr.version === 4);

  const routes = new Map<string, DesiredRoute>();
  const peers = new Map<string, VxlanPeer>();
  const add = (route: DesiredRoute) => routes.set(routeKey(route), route);

  for (const affinity of input.affinities) {
    if (!affinity.confirmed) continue;
    if (affinity.host === self) add({ kind: 'unreachable', dst: affinity.cidr });
    else routeTo(affinity.host, affinity.cidr, false);
  }
  for (const { address, host } of input.lent ?? []) {
    if (host !== self) routeTo(host, { version: address.version, network: address.value, prefix: ADDRESS_BITS[address.version] }, true);
  }
  return {
    routes: [...routes.values()],
    vxlanPeers: [...peers.values()],
    tunnels: { vxlan: pools4.some((p) => p.vxlanMode !== 'Never'), ipip: pools4.some((p) => p.ipipMode !== 'Never') },
  };

  /** `lent`: an address of our block that `host` holds (BIRD exports blocks, never such addresses: ours to route). */
  function routeTo(host: string, dst: Cidr, lent: boolean): void {
    const peer = hosts.get(host);
    const address = hostAddress(dst.version === 4 ? peer?.ipv4Address : peer?.ipv6Address);
    if (!peer || !address) return;
    const pool = pools4.find((p) => cidrContains(p.cidr, { version: dst.version, value: dst.network }));
    const encapsulation = encapsulationTo(pool, address);
    if (encapsulation === 'vxlan') {
      const tunnelAddress = hostAddress(peer.vxlanTunnelAddress);
      // A host that has not yet set up its tunnel end is routed once it has.
      if (!tunnelAddress || !peer.vxlanTunnelMac) return;
      peers.set(formatAddress(tunnelAddress), { tunnelAddress, mac: peer.vxlanTunnelMac, hostAddress: address });
      add({ kind: 'vxlan', dst, via: tunnelAddress });
    } else if (encapsulation === 'ipip') {
      add({ kind: 'ipip', dst, via: address });
    } else if ((backend !== 'bird' || lent || (pool !== undefined && encapsulates(pool))) && isNeighbour(address)) {
      // With BIRD, the blocks of a pool that never encapsulates are BIRD's to route; those of one
      // that does only across subnets are ours within the subnet too.
      add({ kind: 'via', dst, via: address });
    }
  }

  function encapsulationTo(pool: PoolEncapsulation | undefined, peerAddress: IpAddress): Encapsulation {
    if (!pool) return 'none';
    const applies = (mode: EncapsulationMode) => mode === 'Always' || (mode === 'CrossSubnet' && !isNeighbour(peerAddress));
    if (applies(pool.vxlanMode)) return 'vxlan';
    if (applies(pool.ipipMode)) return 'ipip';
    return 'none';
  }

  /** In this host's own subnet: reachable without a routing protocol or a tunnel. */
  function isNeighbour(address: IpAddress): boolean {
    return localNets.some((net) => cidrContains(net, address));
  }
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
