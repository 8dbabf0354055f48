/**
 * Wiring a workload: a veth pair whose container end carries the workload's addresses (/32 and
 * /128) and routes via 169.254.1.1, and whose host end (`cali…`) carries a route to each address.
 *
 * Calico relies on proxy ARP on the host end to answer for 169.254.1.1, but the kernel proxies only
 * for destinations the host can route elsewhere: a host without a default route never answers.
 * So the host end gets the fixed MAC ee:ee:ee:ee:ee:ee and the container a permanent neighbour
 * entry for the gateway (proxy ARP stays on as well); the host likewise gets a permanent entry for
 * each workload address, since we choose the container's MAC ourselves.
 */
import { randomBytes } from 'node:crypto';
import { InvalidInputError } from '../errors';
import { formatAddress, hostPrefix, type IpAddress } from '../net/address';
import { HostInterfaceOwnedError, InterfaceExistsError } from './errors';
import { COMMAND_TIMEOUT_MS, ipBatch, localLinks, netnsExists, parseJsonLines, requireNetns, setSysctl, startIpBatch, sysctlExists, type StartedBatch } from './ip-command';
import { validateInterfaceName, validateMac, validateMetric, validateMtu, validateNetnsPath, validateOwnerTag } from './names';
import { DEFAULT_WORKLOAD_MTU } from '../routing/workload-mtu';

export const GATEWAY_IPV4 = '169.254.1.1';
export const HOST_MAC = 'ee:ee:ee:ee:ee:ee';
/** The host end's IPv6 link-local address: EUI-64 of HOST_MAC. */
export const GATEWAY_IPV6 = 'fe80::ecee:eeff:feee:eeee';

export interface WorkloadInterface {
  /** Path of the container's network namespace. */
  readonly netns: string;
  readonly containerIf: string;
  readonly hostIf: string;
  /** The host end's alias, naming its owner: a host link is removed only when it carries this tag. */
  readonly ownerTag: string;
}

export interface WiringRequest extends WorkloadInterface {
  readonly addresses: readonly IpAddress[];
  readonly mtu?: number;
  /** Chosen by us when absent. */
  readonly containerMac?: string;
  /**
   * Metric of this interface's gateway and default routes. A container on several networks has
   * one interface per network, each with routes to 169.254.1.1; equal routes on two devices
   * clash, so every interface but the first takes a higher metric (the first stays preferred).
   */
  readonly routeMetric?: number;
}

export interface WiredWorkload extends WorkloadInterface {
  readonly containerMac: string;
}

function validated(request: WorkloadInterface): WorkloadInterface {
  return {
    netns: validateNetnsPath(request.netns, 'netns'),
    containerIf: validateInterfaceName(request.containerIf, 'container interface'),
    hostIf: validateInterfaceName(request.hostIf, 'host interface'),
    ownerTag: validateOwnerTag(request.ownerTag),
  };
}

/**
 * Creates the veth pair and programs both ends. On failure nothing it made is left behind.
 *
 * Two ip runs do it: one on the host (the pair, made with its container end created straight
 * inside the container, so no interface ever moves between namespaces, which waits about 20 ms for
 * the kernel; the host end tagged with its owner, up, routed), then, once the container end exists,
 * one in the container (up, addressed, its gateway routes and neighbour entries). Both may be
 * started ahead (startWiring): a process takes milliseconds to start, more through nsenter, and a
 * CNI ADD starts them before it looks the workload up and allocates its addresses.
 */
export async function wireWorkload(request: WiringRequest, runs: WiringRuns = startWiring(request.netns)): Promise<WiredWorkload> {
  try {
    if (request.addresses.length === 0) throw new InvalidInputError('addresses', 'a workload needs at least one address');
    const { netns, containerIf, hostIf, ownerTag } = validated(request);
    const mtu = validateMtu(request.mtu ?? DEFAULT_WORKLOAD_MTU);
    const containerMac = request.containerMac === undefined ? randomMac() : validateMac(request.containerMac, 'container MAC');
    await requireNetns(netns);
    // A host link of this name is left from an earlier attempt of this same workload: replace it.
    // One that is not ours (its alias names another owner) is never touched.
    await removeStaleHostLink(hostIf, ownerTag);
    try {
      await createHostEnd({ hostIf, ownerTag, peerIf: containerIf, peerNetns: netns, mtu, containerMac, addresses: request.addresses }, runs.host);
    } catch (err) {
      if (/File exists/.test((err as { stderr?: string }).stderr ?? '') && !(await localLinks()).has(hostIf)) throw new InterfaceExistsError(containerIf);
      throw err;
    }
    try {
      await runs.container.run(containerLines(containerIf, request.addresses, request.routeMetric));
    } catch (err) {
      // Deleting the host end deletes the container end, and the host routes, with it.
      await removeHostLink(hostIf);
      throw err;
    }
    return { netns, containerIf, hostIf, ownerTag, containerMac };
  } finally {
    abandonWiring(runs);
  }
}

/** The two ip runs of wireWorkload, one on the host and one in the container. */
export interface WiringRuns {
  readonly host: StartedBatch;
  readonly container: StartedBatch;
}

/**
 * Starts the ip runs of wireWorkload ahead of it; wireWorkload ends them, else abandonWiring does.
 * They wait for their lines as long as a runtime waits for a command (the shell front's two minutes).
 */
export function startWiring(netns: string): WiringRuns {
  const path = validateNetnsPath(netns, 'netns');
  const waitMs = 120_000;
  return { host: startIpBatch('create the workload\'s veth', { waitMs }), container: startIpBatch(`set up the workload in ${path}`, { netns: path, waitMs }) };
}

/** Ends runs that were started and not used (with nothing to do); harmless on used ones. */
export function abandonWiring(runs: WiringRuns): void {
  for (const run of [runs.host, runs.container]) run.run([]).catch(() => undefined);
}

/** The container end: up, addressed, with its gateway's routes and permanent neighbour entries. */
function containerLines(containerIf: string, addresses: readonly IpAddress[], routeMetric: number | undefined): string[] {
  const v4 = addresses.filter((a) => a.version === 4);
  const v6 = addresses.filter((a) => a.version === 6);
  const lines = [
    `link set dev ${containerIf} up`,
    ...v4.map((a) => `address add ${hostPrefix(a)} dev ${containerIf}`),
    ...v6.map((a) => `address add ${hostPrefix(a)} dev ${containerIf} nodad`),
  ];
  const metric = routeMetric ? ` metric ${validateMetric(routeMetric)}` : '';
  if (v4.length > 0) {
    lines.push(
      `route add ${GATEWAY_IPV4} dev ${containerIf} scope link${metric}`,
      `route add default via ${GATEWAY_IPV4} dev ${containerIf}${metric}`,
      // Replaced, not added: a namespace that already sends has made an INCOMPLETE entry by now.
      `neigh replace ${GATEWAY_IPV4} lladdr ${HOST_MAC} dev ${containerIf} nud permanent`,
    );
  }
  if (v6.length > 0) {
    lines.push(
      `neigh replace ${GATEWAY_IPV6} lladdr ${HOST_MAC} dev ${containerIf} nud permanent`,
      `route add default via ${GATEWAY_IPV6} dev ${containerIf}${metric}`,
    );
  }
  return lines;
}

/** The host's way to a workload's addresses: a route through its host end, and a permanent neighbour entry for each. */
function hostRoutes(hostIf: string, containerMac: string, addresses: readonly IpAddress[]): string[] {
  return addresses.flatMap((a) => [
    `route replace ${hostPrefix(a)} dev ${hostIf} scope link`,
    `neigh replace ${formatAddress(a)} lladdr ${containerMac} dev ${hostIf} nud permanent`,
  ]);
}

interface HostEnd {
  readonly hostIf: string;
  readonly ownerTag: string;
  readonly peerIf: string;
  /** Where the peer is created; this namespace when absent (Docker moves it itself). */
  readonly peerNetns?: string;
  readonly mtu: number;
  readonly containerMac: string;
  /** Routed in the same ip run, when known already (Docker's). */
  readonly addresses?: readonly IpAddress[];
}

/**
 * The veth pair and its host end, in one ip run: created, tagged with its owner (so a host link
 * of ours never exists untagged), up (with its routes when the addresses are known); then its
 * sysctls, as files: both families' whatever the addresses, as the host end serves whichever the
 * workload uses (IPv6's only where the kernel has IPv6). On failure nothing of ours is left behind.
 */
async function createHostEnd(end: HostEnd, run: StartedBatch = startIpBatch(`create veth ${end.hostIf}`)): Promise<void> {
  const { hostIf, ownerTag, peerIf, mtu, containerMac } = end;
  const peerNetns = end.peerNetns === undefined ? '' : ` netns ${end.peerNetns}`;
  try {
    await run.run([
      `link add name ${hostIf} mtu ${mtu} address ${HOST_MAC} type veth peer name ${peerIf} mtu ${mtu} address ${containerMac}${peerNetns}`,
      `link set dev ${hostIf} alias ${ownerTag} up`,
      ...hostRoutes(hostIf, containerMac, end.addresses ?? []),
    ]);
    // The kernel's reverse-path check, strict, behind the policy table's source check.
    const sysctls: [string, string][] = [
      [`net/ipv4/conf/${hostIf}/rp_filter`, '1'],
      [`net/ipv4/conf/${hostIf}/proxy_arp`, '1'],
      [`net/ipv4/neigh/${hostIf}/proxy_delay`, '0'],
      [`net/ipv4/conf/${hostIf}/forwarding`, '1'],
    ];
    if (sysctlExists(`net/ipv6/conf/${hostIf}`)) {
      sysctls.push([`net/ipv6/conf/${hostIf}/accept_ra`, '0'], [`net/ipv6/conf/${hostIf}/proxy_ndp`, '1'], [`net/ipv6/conf/${hostIf}/forwarding`, '1']);
    }
    await Promise.all(sysctls.map(([path, value]) => setSysctl(path, value)));
  } catch (err) {
    // ip stops at the first line that fails: when that is the first, no pair was made, and a link
    // of that name (a live one of this same workload, on a repeated ADD) is not ours to remove.
    if (/^Command failed -:1$/m.test((err as { stderr?: string }).stderr ?? '')) throw err;
    // Only a link that carries our tag is ours: one made by someone else meanwhile stays.
    await removeOwnedHostLink(hostIf, ownerTag);
    throw err;
  }
}

export interface HostSideRequest {
  readonly hostIf: string;
  /** The end Docker moves into the container itself. */
  readonly peerIf: string;
  readonly addresses: readonly IpAddress[];
  readonly containerMac: string;
  readonly ownerTag: string;
  readonly mtu?: number;
}

/**
 * For Docker, which moves the container end itself: a veth pair in this namespace, the host end
 * programmed as for wireWorkload. On failure nothing it made is left behind.
 */
export async function createHostSideVeth(request: HostSideRequest): Promise<void> {
  const hostIf = validateInterfaceName(request.hostIf, 'host interface');
  const peerIf = validateInterfaceName(request.peerIf, 'peer interface');
  const mtu = validateMtu(request.mtu ?? DEFAULT_WORKLOAD_MTU);
  const containerMac = validateMac(request.containerMac, 'container MAC');
  const ownerTag = validateOwnerTag(request.ownerTag);
  // The peer is named from the same identity and is ours until Docker moves it away.
  await removeStaleHostLink(hostIf, ownerTag);
  if ((await localLinks()).has(peerIf)) await removeHostLink(peerIf);
  await createHostEnd({ hostIf, ownerTag, peerIf, mtu, containerMac, addresses: request.addresses });
}

/** Docker moves the interface in within a few hundred ms: look often at first, then seldom. */
const PIN_POLL_MS = { fast: 20, fastFor: 2000, slow: 250 };

/**
 * Docker configures the container end but cannot add neighbour entries, and proxy ARP alone fails
 * on hosts without a default route (see the top of this file). Once the interface with `containerMac`
 * is up inside `netns`, add the permanent gateway entries there. Gives up after `timeoutMs`, or as
 * soon as the namespace it saw goes away (the container did not start).
 */
export async function pinGatewayNeighbours(netnsPath: string, containerMac: string, families: { v4: boolean; v6: boolean }, timeoutMs = 10_000): Promise<boolean> {
  const netns = validateNetnsPath(netnsPath, 'sandbox');
  const mac = validateMac(containerMac, 'container MAC');
  const started = Date.now();
  let seen = false;
  while (Date.now() - started < timeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, Date.now() - started < PIN_POLL_MS.fastFor ? PIN_POLL_MS.fast : PIN_POLL_MS.slow));
    if (!(await netnsExists(netns))) {
      if (seen) return false;
      continue;
    }
    seen = true;
    const { stdout } = await ipBatch(`list links in ${netns}`, ['link show'], { netns, json: true }).catch(() => ({ stdout: '' }));
    const link = parseJsonLines<IpLink[]>(stdout)[0]?.find((l) => l.address === mac && l.flags?.includes('UP'));
    if (!link) continue;
    const dev = validateInterfaceName(link.ifname, 'container interface');
    await ipBatch(`pin the gateway neighbours in ${netns}`, [
      ...(families.v4 ? [`neigh replace ${GATEWAY_IPV4} lladdr ${HOST_MAC} dev ${dev} nud permanent`] : []),
      ...(families.v6 ? [`neigh replace ${GATEWAY_IPV6} lladdr ${HOST_MAC} dev ${dev} nud permanent`] : []),
    ], { netns });
    return true;
  }
  return false;
}

/**
 * The kernel's reverse-path check on a workload's host interface: strict, as wiring leaves it, or
 * off for one whose endpoint may send from prefixes besides its own addresses (the policy table
 * still allows exactly those). An interface that is gone is fine.
 */
export async function setReversePathCheck(hostIf: string, strict: boolean): Promise<void> {
  const name = validateInterfaceName(hostIf, 'host interface');
  if (!(await localLinks()).has(name)) return;
  await setSysctl(`net/ipv4/conf/${name}/rp_filter`, strict ? '1' : '0');
}

/** What became of a workload's host link on removal: a link that is not ours stays. */
export type HostLinkRemoval = 'removed' | 'absent' | 'not ours';

/**
 * Removes the workload's interfaces: its host link, when the link's alias names this owner.
 * Deleting either end of a veth deletes both, so the container end goes with it, and the host
 * routes with the link. The container end is never removed by its name: another network's
 * attachment to the same container may carry that name. Idempotent: a link already gone is fine.
 */
export async function unwireWorkload(request: { hostIf: string; ownerTag: string }): Promise<HostLinkRemoval> {
  return removeOwnedHostLink(validateInterfaceName(request.hostIf, 'host interface'), validateOwnerTag(request.ownerTag));
}

/**
 * The kernel takes 10 to 30 ms to delete a veth (it waits out RCU grace periods), longer than all
 * the rest of a DEL. So a host link being removed is cut off at once, in one ip run: set down,
 * which takes its routes and neighbour entries with it, and renamed out of the way (a new link may
 * take its name at once; the deletion below can only meet this one). Its deletion then runs in
 * the background; a process waits for these before it exits (hostLinksDeleted). Were it to die
 * first, the renamed link stays down until its container's namespace goes, which takes it along.
 */
const deletions = new Map<string, Promise<void>>();

/** Resolves once every host link this process has begun to delete is gone. */
export async function hostLinksDeleted(): Promise<void> {
  await Promise.all([...deletions.values()]);
}

/**
 * Before a host link is made: the one of that name being deleted must be gone, since its veth's
 * other end still holds its name in the container until then.
 */
async function deletedBefore(hostIf: string): Promise<void> {
  await deletions.get(hostIf);
}

/** A host link's name while it is deleted: "cali-" and ten random hex digits, never a workload's own ("cali" and eleven). */
function deletionName(): string {
  return `cali-${randomBytes(5).toString('hex')}`;
}

/** Removes a host link if it carries `ownerTag`; a link of another owner is left alone. */
export async function removeOwnedHostLink(hostIf: string, ownerTag: string): Promise<HostLinkRemoval> {
  if (!(await localLinks()).has(hostIf)) return 'absent';
  // The run that cuts it off starts now, its start-up passing while its owner is read.
  const cut = startIpBatch(`cut off host interface ${hostIf}`, { waitMs: COMMAND_TIMEOUT_MS });
  let alias: string | undefined;
  try {
    alias = await hostLinkAlias(hostIf);
  } finally {
    // Not ours to cut off (or not read): the run ends with nothing to do.
    if (alias !== ownerTag) cut.run([]).catch(() => undefined);
  }
  if (alias !== ownerTag) return alias === undefined ? 'absent' : 'not ours';
  const doomed = deletionName();
  try {
    await cut.run([`link set dev ${hostIf} down`, `link set dev ${hostIf} name ${doomed}`]);
  } catch (err) {
    if (isMissing(err)) return 'absent';
    throw err;
  }
  // Down and nameless to anyone, a link whose deletion failed harms nobody: it stays as a crash
  // would leave it.
  const deletion = removeHostLink(doomed).catch(() => undefined);
  deletions.set(hostIf, deletion);
  void deletion.then(() => {
    if (deletions.get(hostIf) === deletion) deletions.delete(hostIf);
  });
  return 'removed';
}

/**
 * Before creating a host link: one of ours left behind goes, anyone else's is an error. Either way
 * its name is free when this returns, in the container too.
 */
async function removeStaleHostLink(hostIf: string, ownerTag: string): Promise<void> {
  await deletedBefore(hostIf);
  const removal = await removeOwnedHostLink(hostIf, ownerTag);
  if (removal === 'not ours') throw new HostInterfaceOwnedError(hostIf);
  await deletedBefore(hostIf);
}

/** The alias of a host link ("" when it has none), or undefined when the link is gone. */
async function hostLinkAlias(hostIf: string): Promise<string | undefined> {
  try {
    const { stdout } = await ipBatch(`inspect host interface ${hostIf}`, [`link show dev ${hostIf}`], { json: true });
    return parseJsonLines<IpLink[]>(stdout)[0]?.[0]?.ifalias ?? '';
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

async function removeHostLink(hostIf: string): Promise<void> {
  await ignoreMissing(ipBatch(`remove host interface ${hostIf}`, [`link del dev ${hostIf}`]));
}

function isMissing(err: unknown): boolean {
  return /Cannot find device|does not exist|No such device/.test((err as { stderr?: string }).stderr ?? '');
}

async function ignoreMissing(pending: Promise<unknown>): Promise<void> {
  try {
    await pending;
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
}

export interface WorkloadState {
  readonly host: { readonly exists: boolean; readonly up: boolean; readonly routes: readonly string[] };
  readonly container: {
    readonly exists: boolean;
    readonly mac?: string;
    readonly mtu?: number;
    readonly addresses: readonly string[];
    readonly routes: readonly { dst: string; gateway?: string }[];
  };
}

interface IpLink {
  ifname: string;
  ifalias?: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  addr_info?: { local: string; prefixlen: number; scope?: string }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
}

/** What exists now for a workload (for CNI CHECK): links, addresses and routes on both sides. */
export async function inspectWorkload(request: Omit<WorkloadInterface, 'ownerTag'>): Promise<WorkloadState> {
  const { netns, containerIf, hostIf } = validated({ ...request, ownerTag: 'inspect' });
  const hostExists = (await localLinks()).has(hostIf);
  const host = hostExists ? await inspectHost(hostIf) : { exists: false, up: false, routes: [] };
  const container = (await netnsExists(netns)) ? await inspectContainer(netns, containerIf) : { exists: false, addresses: [], routes: [] };
  return { host, container };
}

async function inspectHost(hostIf: string): Promise<WorkloadState['host']> {
  const [v4, v6] = await Promise.all(
    ([4, 6] as const).map((family) => ipBatch(`inspect ${hostIf}`, [`link show dev ${hostIf}`, `route show dev ${hostIf}`], { json: true, family })),
  );
  const [links, routes4] = parseJsonLines<IpLink[] | IpRoute[]>(v4!.stdout) as [IpLink[], IpRoute[]];
  const routes6 = (parseJsonLines<IpRoute[]>(v6!.stdout)[1] ?? []).filter((r) => !r.dst.startsWith('fe80::'));
  return {
    exists: true,
    up: links[0]?.flags?.includes('UP') ?? false,
    routes: [...routes4, ...routes6].map((r) => r.dst),
  };
}

async function inspectContainer(netns: string, containerIf: string): Promise<WorkloadState['container']> {
  let runs;
  try {
    runs = await Promise.all(
      ([4, 6] as const).map((family) =>
        ipBatch(`inspect ${containerIf} in ${netns}`, // `addr show` first: after a `link show`, iproute2's batch mode drops addr_info.
        [`addr show dev ${containerIf}`, `link show dev ${containerIf}`, 'route show'], { netns, json: true, family }),
      ),
    );
  } catch (err) {
    if (/does not exist|Cannot find device/.test((err as { stderr?: string }).stderr ?? '')) return { exists: false, addresses: [], routes: [] };
    throw err;
  }
  const [addrs4, links, routes4] = parseJsonLines<IpLink[] | IpRoute[]>(runs[0]!.stdout) as [IpLink[], IpLink[], IpRoute[]];
  const [addrs6, , routes6] = parseJsonLines<IpLink[] | IpRoute[]>(runs[1]!.stdout) as [IpLink[], IpLink[], IpRoute[]];
  const link = links[0];
  const addresses = [...(addrs4[0]?.addr_info ?? []), ...(addrs6[0]?.addr_info ?? [])]
    .filter((a) => a.scope !== 'link')
    .map((a) => `${a.local}/${a.prefixlen}`);
  const routes = [...routes4, ...routes6]
    .filter((r) => r.dev === containerIf && !r.dst.startsWith('fe80::'))
    .map((r) => (r.gateway ? { dst: r.dst, gateway: r.gateway } : { dst: r.dst }));
  return { exists: true, mac: link?.address, mtu: link?.mtu, addresses, routes };
}

/** A random locally administered unicast MAC. */
export function randomMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
