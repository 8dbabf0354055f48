/**
 * The host's routes to workload blocks, kept in step with a desired set. Our routes carry their
 * own protocol number, so they are told apart from every other route on the host and only they
 * are ever replaced or removed.
 */
import { formatCidr, parseCidr } from '../net/cidr';
import { formatAddress, parseAddress } from '../net/address';
import { IPIP_DEVICE, VXLAN_DEVICE, routeKey, type DesiredRoute } from '../routing/desired-routes';
import { ipBatch, parseJsonLines, setSysctl } from './ip-command';

/** The `proto` of the routes we own (iproute2 shows an unnamed number as is). */
export const ROUTE_PROTO = 80;

/**
 * The metric of the unreachable route of one of this host's blocks. A block of a single address
 * (a pool with blockSize 32 or 128) has the same prefix as its workload's own route: at a metric
 * of its own the two are different routes, the workload's (metric 0) wins, and neither replaces
 * the other.
 */
const UNREACHABLE_METRIC = 1024;

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  type?: string;
  metric?: number;
}

/** The device a kind of route is on-link on (a direct route finds its own). */
const TUNNEL_DEVICES: Readonly<Record<'vxlan' | 'ipip', string>> = { vxlan: VXLAN_DEVICE, ipip: IPIP_DEVICE };

/** Our routes now in the kernel, by the same keys as routeKey(). */
async function currentRoutes(): Promise<Map<string, { family: 4 | 6; dst: string; unreachable: boolean; metric: number }>> {
  const out = new Map<string, { family: 4 | 6; dst: string; unreachable: boolean; metric: number }>();
  for (const family of [4, 6] as const) {
    const { stdout } = await ipBatch('list our routes', [`route show proto ${ROUTE_PROTO}`], { json: true, family });
    for (const route of parseJsonLines<IpRoute[]>(stdout)[0] ?? []) {
      const dst = route.dst.includes('/') ? route.dst : `${route.dst}/${family === 4 ? 32 : 128}`;
      const cidr = formatCidr(parseCidr(dst, 'route', true));
      const unreachable = route.type === 'unreachable';
      const tunnel = route.dev === VXLAN_DEVICE || route.dev === IPIP_DEVICE ? ` dev ${route.dev}` : '';
      const metric = route.metric ?? 0;
      // One at another metric (made by an earlier release) is not the wanted one: it is replaced.
      const key = unreachable ? `unreachable ${cidr}${metric === UNREACHABLE_METRIC ? '' : ` metric ${metric}`}` : `${cidr} via ${formatAddress(parseAddress(route.gateway ?? '', 'gateway'))}${tunnel}`;
      out.set(key, { family, dst: cidr, unreachable, metric });
    }
  }
  return out;
}

export interface RouteUpdate {
  readonly added: number;
  readonly removed: number;
  readonly failure?: string;
}

/** Adds what is missing, removes what is no longer wanted, as the kernel has them now (the repair). */
export async function syncRoutes(desired: readonly DesiredRoute[]): Promise<RouteUpdate> {
  const current = await currentRoutes();
  const wanted = new Map(desired.map((r) => [routeKey(r), r]));
  const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
  let removed = 0;
  for (const [key, route] of current) {
    if (wanted.has(key)) continue;
    lines[route.family].push(`route del ${route.unreachable ? 'unreachable ' : ''}${route.dst} proto ${ROUTE_PROTO} metric ${route.metric}`);
    removed++;
  }
  const missing = [...wanted].filter(([key]) => !current.has(key)).map(([, route]) => route);
  for (const route of missing) lines[route.dst.version].push(replaceLine(route));
  return { added: missing.length, removed, ...(await applyRouteLines(lines)) };
}

/**
 * Changes exactly the routes named, without reading the kernel's: the caller's record of what it
 * programmed says what is there. Removals go first, so a route replaced by one to the same
 * destination ends up the new one.
 */
export async function updateRoutes(added: readonly DesiredRoute[], removed: readonly DesiredRoute[]): Promise<RouteUpdate> {
  const lines: Record<4 | 6, string[]> = { 4: [], 6: [] };
  for (const route of removed) {
    const dst = formatCidr(route.dst);
    lines[route.dst.version].push(route.kind === 'unreachable'
      ? `route del unreachable ${dst} proto ${ROUTE_PROTO} metric ${UNREACHABLE_METRIC}`
      : `route del ${dst} via ${formatAddress(route.via)}${route.kind === 'via' ? '' : ` dev ${TUNNEL_DEVICES[route.kind]}`} proto ${ROUTE_PROTO}`);
  }
  for (const route of added) lines[route.dst.version].push(replaceLine(route));
  return { added: added.length, removed: removed.length, ...(await applyRouteLines(lines)) };
}

function replaceLine(route: DesiredRoute): string {
  const dst = formatCidr(route.dst);
  return route.kind === 'unreachable'
    ? `route replace unreachable ${dst} proto ${ROUTE_PROTO} metric ${UNREACHABLE_METRIC}`
    : `route replace ${dst} via ${formatAddress(route.via)}${route.kind === 'via' ? '' : ` dev ${TUNNEL_DEVICES[route.kind]} onlink`} proto ${ROUTE_PROTO}`;
}

async function applyRouteLines(lines: Record<4 | 6, string[]>): Promise<{ failure?: string }> {
  let failure: string | undefined;
  for (const family of [4, 6] as const) {
    // -force: one route that cannot be made (a next hop gone meanwhile) must not stop the others;
    // the caller repairs from the kernel's routes.
    if (lines[family].length === 0) continue;
    await ipBatch('update routes to workload blocks', lines[family], { family, force: true }).catch((err: Error) => (failure = err.message));
  }
  return failure ? { failure } : {};
}

/** The host's first global addresses (as "a.b.c.d/len"), skipping workload and container bridges. */
export async function detectHostAddresses(): Promise<{ ipv4?: string; ipv6?: string }> {
  const found: { ipv4?: string; ipv6?: string } = {};
  for (const family of [4, 6] as const) {
    const { stdout } = await ipBatch('list host addresses', ['addr show scope global'], { json: true, family });
    for (const link of parseJsonLines<{ ifname: string; addr_info?: { local: string; prefixlen: number }[] }[]>(stdout)[0] ?? []) {
      if (/^(lo|cali|tmp|docker|br-|veth)/.test(link.ifname)) continue;
      const address = link.addr_info?.[0];
      if (!address) continue;
      found[family === 4 ? 'ipv4' : 'ipv6'] = `${address.local}/${address.prefixlen}`;
      break;
    }
  }
  return found;
}

/** A host that routes between workloads and other hosts forwards (Felix sets the same). */
export async function enableForwarding(): Promise<void> {
  await setSysctl('net/ipv4/ip_forward', '1');
  await setSysctl('net/ipv6/conf/all/forwarding', '1').catch(() => undefined); // IPv6 may be off on this host
}

/** Whether the host has routes BIRD put in the kernel (left by a BIRD that stopped: there is something to recover). */
export async function hasBirdRoutes(): Promise<boolean> {
  for (const family of [4, 6] as const) {
    const { stdout } = await ipBatch('list BIRD\'s routes', ['route show proto bird'], { json: true, family });
    if ((parseJsonLines<unknown[]>(stdout)[0] ?? []).length > 0) return true;
  }
  return false;
}
