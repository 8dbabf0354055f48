/**
 * The host's tunnel devices, as Felix keeps them: `vxlan.calico` (VNI 4096, UDP port 4789, no
 * learning: every remote tunnel end is told to it, a neighbour entry for the end's address and a
 * forwarding entry for its MAC) and the kernel's IPIP device `tunl0`. Each carries the host's
 * tunnel address as a /32. The devices are ours by name, as in Calico; everything on them is
 * replaced to match what is wanted, and nothing else on the host is touched.
 */
import { formatAddress, parseAddress, type IpAddress } from '../net/address';
import { IPIP_DEVICE, VXLAN_DEVICE, type VxlanPeer } from '../routing/desired-routes';
import { VXLAN_PORT, VXLAN_VNI } from '../routing/encapsulations';
import { TunnelUnsupportedError } from './errors';
import { bridgeBatch, ipBatch, localLinks, parseJsonLines } from './ip-command';

export interface VxlanEnd {
  /** The host's own address, the outer source. */
  readonly local: IpAddress;
  readonly tunnelAddress: IpAddress;
  readonly mac: string;
  readonly mtu: number;
}

export interface IpipEnd {
  readonly tunnelAddress: IpAddress;
  readonly mtu: number;
}

interface LinkDetails {
  ifname: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number; learning?: boolean } };
}

async function linkDetails(name: string): Promise<LinkDetails | undefined> {
  if (!(await localLinks()).has(name)) return undefined;
  const { stdout } = await ipBatch(`read ${name}`, [`link show dev ${name}`], { json: true, details: true });
  return parseJsonLines<LinkDetails[]>(stdout)[0]?.[0];
}

/** Lines that make the device's addresses exactly `address`/32. */
async function addressLines(device: string, address: IpAddress): Promise<string[]> {
  const { stdout } = await ipBatch(`read ${device}'s addresses`, [`addr show dev ${device}`], { json: true, family: 4 });
  const present = (parseJsonLines<{ addr_info?: { local: string; prefixlen: number }[] }[]>(stdout)[0]?.[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  const wanted = `${formatAddress(address)}/32`;
  return [...present.filter((a) => a !== wanted).map((a) => `addr del ${a} dev ${device}`), ...(present.includes(wanted) ? [] : [`addr add ${wanted} dev ${device}`])];
}

/** Makes `vxlan.calico` what `end` says, with exactly `peers` as its remote ends; removes it when `end` is undefined. Says how many entries changed. */
export async function syncVxlanDevice(end: VxlanEnd | undefined, peers: readonly VxlanPeer[]): Promise<number> {
  const link = await linkDetails(VXLAN_DEVICE);
  if (!end) {
    if (link) await ipBatch(`remove ${VXLAN_DEVICE}`, [`link del ${VXLAN_DEVICE}`]);
    return link ? 1 : 0;
  }
  const data = link?.linkinfo?.info_data;
  const fits = link?.linkinfo?.info_kind === 'vxlan' && data?.id === VXLAN_VNI && data.port === VXLAN_PORT && data.local === formatAddress(end.local) && data.learning === false;
  const lines: string[] = [];
  if (link && !fits) lines.push(`link del ${VXLAN_DEVICE}`);
  if (!fits) lines.push(`link add ${VXLAN_DEVICE} type vxlan id ${VXLAN_VNI} dstport ${VXLAN_PORT} local ${formatAddress(end.local)} nolearning`);
  if (!fits || link?.address !== end.mac || link.mtu !== end.mtu || !link.flags?.includes('UP')) lines.push(`link set ${VXLAN_DEVICE} address ${end.mac} mtu ${end.mtu} up`);
  if (lines.length > 0) {
    await ipBatch(`set up ${VXLAN_DEVICE}`, lines).catch((err: Error) => {
      throw /unknown device type|not supported/i.test(err.message) ? new TunnelUnsupportedError('vxlan', err.message) : err;
    });
  }
  const addresses = await addressLines(VXLAN_DEVICE, end.tunnelAddress);
  if (addresses.length > 0) await ipBatch(`address ${VXLAN_DEVICE}`, addresses);
  return lines.length + addresses.length + (await syncVxlanPeers(peers));
}

/** The neighbour (tunnel address to MAC) and forwarding (MAC to host) entries of each remote end. */
async function syncVxlanPeers(peers: readonly VxlanPeer[]): Promise<number> {
  const [neighbours, forwarding] = await Promise.all([
    ipBatch('read VXLAN neighbours', [`neigh show dev ${VXLAN_DEVICE}`], { json: true, family: 4 }),
    bridgeBatch('read VXLAN forwarding entries', [`fdb show dev ${VXLAN_DEVICE}`], { json: true }),
  ]);
  const neighboursNow = new Map((parseJsonLines<{ dst: string; lladdr?: string }[]>(neighbours.stdout)[0] ?? []).map((n) => [n.dst, n.lladdr]));
  const forwardingNow = (parseJsonLines<{ mac: string; dst?: string }[]>(forwarding.stdout)[0] ?? []).filter((f) => f.dst !== undefined);
  const wantedNeighbours = new Map(peers.map((p) => [formatAddress(p.tunnelAddress), p.mac]));
  const wantedForwarding = new Map(peers.map((p) => [p.mac, formatAddress(p.hostAddress)]));

  const ipLines: string[] = [];
  for (const [dst, mac] of neighboursNow) if (wantedNeighbours.get(dst) !== mac) ipLines.push(neighbourDel(dst));
  for (const [dst, mac] of wantedNeighbours) if (neighboursNow.get(dst) !== mac) ipLines.push(neighbourSet(dst, mac));
  const bridgeLines: string[] = [];
  for (const { mac, dst } of forwardingNow) if (wantedForwarding.get(mac) !== dst) bridgeLines.push(forwardingDel(mac, dst!));
  for (const [mac, dst] of wantedForwarding) if (!forwardingNow.some((f) => f.mac === mac && f.dst === dst)) bridgeLines.push(forwardingSet(mac, dst));
  return applyPeerLines(ipLines, bridgeLines);
}

/**
 * Tells `vxlan.calico` of remote ends that came and went, without reading what it has: the
 * route keeper's record of what it programmed says (syncVxlanDevice repairs from the kernel).
 */
export async function updateVxlanPeers(added: readonly VxlanPeer[], removed: readonly VxlanPeer[]): Promise<number> {
  const wantedMacs = new Set(added.map((p) => p.mac));
  const wantedAddresses = new Set(added.map((p) => formatAddress(p.tunnelAddress)));
  // An end replaced by one with the same address or MAC is replaced, not deleted after.
  const ipLines = [
    ...removed.filter((p) => !wantedAddresses.has(formatAddress(p.tunnelAddress))).map((p) => neighbourDel(formatAddress(p.tunnelAddress))),
    ...added.map((p) => neighbourSet(formatAddress(p.tunnelAddress), p.mac)),
  ];
  const bridgeLines = [
    ...removed.filter((p) => !wantedMacs.has(p.mac)).map((p) => forwardingDel(p.mac, formatAddress(p.hostAddress))),
    ...added.map((p) => forwardingSet(p.mac, formatAddress(p.hostAddress))),
  ];
  return applyPeerLines(ipLines, bridgeLines);
}

/** A remote end's neighbour entry (its tunnel address to its MAC) and forwarding entry (its MAC to its host). */
const neighbourSet = (address: string, mac: string) => `neigh replace ${address} lladdr ${mac} dev ${VXLAN_DEVICE} nud permanent`;
const neighbourDel = (address: string) => `neigh del ${address} dev ${VXLAN_DEVICE}`;
const forwardingSet = (mac: string, host: string) => `fdb replace ${mac} dev ${VXLAN_DEVICE} dst ${host} self permanent`;
const forwardingDel = (mac: string, host: string) => `fdb del ${mac} dev ${VXLAN_DEVICE} dst ${host} self`;

/** Says how many entries changed. */
async function applyPeerLines(ipLines: readonly string[], bridgeLines: readonly string[]): Promise<number> {
  // -force: an entry gone meanwhile must not stop the others; the next repair looks again.
  if (ipLines.length > 0) await ipBatch('update VXLAN neighbours', ipLines, { force: true });
  if (bridgeLines.length > 0) await bridgeBatch('update VXLAN forwarding entries', bridgeLines, { force: true });
  return ipLines.length + bridgeLines.length;
}

/**
 * Gives `tunl0` the host's IPIP tunnel address and MTU, and brings it up; with `end` undefined,
 * takes `previous` (an address we gave it) off again. The device exists when the kernel has IPIP.
 */
export async function syncIpipDevice(end: IpipEnd | undefined, previous?: IpAddress): Promise<number> {
  const link = await linkDetails(IPIP_DEVICE);
  if (!end) {
    if (!link || !previous) return 0;
    await ipBatch(`take the tunnel address off ${IPIP_DEVICE}`, [`addr del ${formatAddress(previous)}/32 dev ${IPIP_DEVICE}`], { force: true }).catch(() => undefined);
    return 1;
  }
  if (!link) throw new TunnelUnsupportedError('ipip', `there is no ${IPIP_DEVICE} device (the ipip module is not loaded)`);
  const lines = link.mtu !== end.mtu || !link.flags?.includes('UP') ? [`link set ${IPIP_DEVICE} mtu ${end.mtu} up`] : [];
  lines.push(...(await addressLines(IPIP_DEVICE, end.tunnelAddress)));
  if (lines.length > 0) await ipBatch(`set up ${IPIP_DEVICE}`, lines);
  return lines.length;
}

/** The link that holds `address`, and its MTU: the tunnels' outer packets leave through it. */
export async function linkHolding(address: IpAddress): Promise<{ name: string; mtu: number } | undefined> {
  const { stdout } = await ipBatch('list host addresses', ['addr show'], { json: true, family: address.version });
  for (const link of parseJsonLines<{ ifname: string; mtu: number; addr_info?: { local: string }[] }[]>(stdout)[0] ?? []) {
    if (link.addr_info?.some((a) => parseAddress(a.local).value === address.value)) return { name: link.ifname, mtu: link.mtu };
  }
  return undefined;
}
