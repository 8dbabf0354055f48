/**
 * This host's tunnel ends, as calico-node keeps them: while some pool encapsulates with VXLAN, an
 * IPv4 address from such a pool (handle `vxlan-tunnel-addr-<node>`) and a MAC, recorded on the
 * Node (`ipv4VXLANTunnelAddr`, `vxlanTunnelMACAddr`) so that other hosts can route to it; the same
 * for IPIP (`bgp.ipv4IPIPTunnelAddr`, no MAC). When no pool needs one any more, the address is
 * released and the record cleared. An address that left its pools (the pool was deleted or changed
 * its mode) is given back and a new one taken.
 */
import { randomBytes } from 'node:crypto';
import type { ViewPool } from '../shared/cluster-view/sections';
import { ConflictError, type Datastore, type NodeSpec, type Resource } from '../shared/datastore';
import { tunnelHandle } from '../shared/endpoints/identity';
import { ownedBy } from '../shared/ipam/block';
import type { Ipam } from '../shared/ipam/ipam';
import { cidrContains, formatAddress, formatCidr, type IpAddress } from '../shared/net';

export interface TunnelEnds {
  readonly vxlan?: { readonly address: IpAddress; readonly mac: string };
  readonly ipip?: IpAddress;
}

type Kind = 'vxlan' | 'ipip';

/**
 * Keeps the tunnel ends `needed` and gives back the others; returns what this host now has.
 * `existing`: this host's Node as the cluster view has it.
 */
export async function keepTunnelEnds(ds: Datastore, ipam: Ipam, node: string, existing: Resource<'Node'> | undefined, pools: readonly ViewPool[], needed: { vxlan: boolean; ipip: boolean }): Promise<TunnelEnds> {
  const vxlan = await keepAddress(ipam, node, 'vxlan', needed.vxlan ? pools.filter((p) => p.cidr.version === 4 && p.vxlanMode !== 'Never' && !p.disabled) : []);
  const ipip = await keepAddress(ipam, node, 'ipip', needed.ipip ? pools.filter((p) => p.cidr.version === 4 && p.ipipMode !== 'Never' && !p.disabled) : []);
  const mac = existing?.spec.vxlanTunnelMACAddr && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(existing.spec.vxlanTunnelMACAddr) ? existing.spec.vxlanTunnelMACAddr : randomMac();
  if (existing) await record(ds, existing, vxlan ? { address: vxlan, mac } : undefined, ipip);
  return { ...(vxlan ? { vxlan: { address: vxlan, mac } } : {}), ...(ipip ? { ipip } : {}) };
}

/** The tunnel address of `kind`, from `pools`; none (and the old one released) when `pools` is empty. */
async function keepAddress(ipam: Ipam, node: string, kind: Kind, pools: readonly ViewPool[]): Promise<IpAddress | undefined> {
  const handle = tunnelHandle(kind, node);
  const held = await ipam.handleAddresses(handle);
  const keep = held.find((a) => pools.some((p) => cidrContains(p.cidr, a)));
  const stale = held.filter((a) => a !== keep);
  if (stale.length > 0) await ipam.release(stale, ownedBy(handle));
  if (keep || pools.length === 0) return keep;
  const { ipv4 } = await ipam.autoAssign({ handle, node, num4: 1, num6: 0, pools4: pools.map((p) => formatCidr(p.cidr)), attributes: { type: `${kind}TunnelAddress` } });
  return ipv4[0];
}

/** Writes the tunnel ends onto the Node when they differ; a concurrent change comes back through the view. */
async function record(ds: Datastore, node: Resource<'Node'>, vxlan: { address: IpAddress; mac: string } | undefined, ipip: IpAddress | undefined): Promise<void> {
  const { ipv4VXLANTunnelAddr: _address, vxlanTunnelMACAddr: _mac, ...rest } = node.spec;
  const { ipv4IPIPTunnelAddr: _ipip, ...bgp } = node.spec.bgp ?? {};
  const spec: NodeSpec = {
    ...rest,
    bgp: { ...bgp, ...(ipip ? { ipv4IPIPTunnelAddr: formatAddress(ipip) } : {}) },
    ...(vxlan ? { ipv4VXLANTunnelAddr: formatAddress(vxlan.address), vxlanTunnelMACAddr: vxlan.mac } : {}),
  };
  if (JSON.stringify(spec) === JSON.stringify(node.spec)) return;
  try {
    await ds.resources.update({ ...node, spec });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
}

/** A locally administered unicast MAC, as Felix makes for its VXLAN device. */
function randomMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
