/**
 * Which routes a host needs so that workloads on different hosts reach each other (no BGP, no
 * overlay: the hosts share a link): each other host's confirmed blocks via that host's address,
 * and an unreachable route for each of its own blocks, so that a packet to a free address of a
 * local block is dropped here rather than sent towards a default route. The workloads' own /32 and
 * /128 routes are more specific and win.
 */
import { cidrContains, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { parseAddress, formatAddress, type IpAddress } from '../net/address';

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

export type DesiredRoute =
  | { readonly kind: 'via'; readonly dst: Cidr; readonly via: IpAddress }
  | { readonly kind: 'unreachable'; readonly dst: Cidr };

export function routeKey(route: DesiredRoute): string {
  return route.kind === 'via' ? `${formatCidr(route.dst)} via ${formatAddress(route.via)}` : `unreachable ${formatCidr(route.dst)}`;
}

export function desiredRoutes(self: string, affinities: readonly BlockAffinity[], hosts: readonly HostAddresses[]): DesiredRoute[] {
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
    const hops = nextHops.get(affinity.host);
    const via = affinity.cidr.version === 4 ? hops?.v4 : hops?.v6;
    // Only a neighbour on a shared link can be a next hop without a routing protocol.
    if (!via || !localNets.some((net) => cidrContains(net, via))) continue;
    const route: DesiredRoute = { kind: 'via', dst: affinity.cidr, via };
    routes.set(routeKey(route), route);
  }
  return [...routes.values()];
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
