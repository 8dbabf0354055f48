/**
 * Which routes a host needs so that workloads on different hosts reach each other (no BGP, no
 * overlay: the hosts share a link): each other host's confirmed blocks via that host's address,
 * and an unreachable route for each of its own blocks, so that a packet to a free address of a
 * local block is dropped here rather than sent towards a default route. The workloads' own /32 and
 * /128 routes are more specific and win. An address of one of its blocks that a workload on another
 * host holds (asked for by name, or borrowed from a full pool) gets a /32 or /128 route to that
 * host: other hosts send it here with the block, and this host passes it on.
 */
import { cidrContains, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { ADDRESS_BITS, parseAddress, formatAddress, type IpAddress } from '../net/address';

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
}

/** An address of this host's blocks that a workload of another host holds. */
export interface LentAddress {
  readonly address: IpAddress;
  readonly host: string;
}

export type DesiredRoute =
  | { readonly kind: 'via'; readonly dst: Cidr; readonly via: IpAddress }
  | { readonly kind: 'unreachable'; readonly dst: Cidr };

export function routeKey(route: DesiredRoute): string {
  return route.kind === 'via' ? `${formatCidr(route.dst)} via ${formatAddress(route.via)}` : `unreachable ${formatCidr(route.dst)}`;
}

export function desiredRoutes(self: string, affinities: readonly BlockAffinity[], hosts: readonly HostAddresses[], lent: readonly LentAddress[] = []): DesiredRoute[] {
  const selfHost = hosts.find((h) => h.name === self);
  const nextHops = new Map<string, { v4?: IpAddress; v6?: IpAddress }>();
  for (const host of hosts) nextHops.set(host.name, { v4: hostAddress(host.ipv4Address), v6: hostAddress(host.ipv6Address) });
  const localNets = [parseNet(selfHost?.ipv4Address), parseNet(selfHost?.ipv6Address)].filter((n): n is Cidr => n !== undefined);

  const routes = new Map<string, DesiredRoute>();
  for (const affinity of affinities) {
    if (!affinity.confirmed) continue;
    if (affinity.host === self) {
      const route: DesiredRoute = { kind: 'unreachable', dst: affinity.cidr };
      routes.set(routeKey(route), route);
      continue;
    }
    const via = neighbourOf(affinity.host, affinity.cidr.version);
    if (!via) continue;
    const route: DesiredRoute = { kind: 'via', dst: affinity.cidr, via };
    routes.set(routeKey(route), route);
  }
  for (const { address, host } of lent) {
    const via = host === self ? undefined : neighbourOf(host, address.version);
    if (!via) continue;
    const route: DesiredRoute = { kind: 'via', dst: { version: address.version, network: address.value, prefix: ADDRESS_BITS[address.version] }, via };
    routes.set(routeKey(route), route);
  }
  return [...routes.values()];

  /** A host's address, when it is a neighbour on a shared link: only such can be a next hop without a routing protocol. */
  function neighbourOf(host: string, version: 4 | 6): IpAddress | undefined {
    const hops = nextHops.get(host);
    const via = version === 4 ? hops?.v4 : hops?.v6;
    return via && localNets.some((net) => cidrContains(net, via)) ? via : undefined;
  }
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
