/**
 * Whom this host's BIRD peers with, as calico-node decides it:
 * - the node-to-node mesh (BGPConfiguration `nodeToNodeMeshEnabled`, on by default): every other
 *   node with an address of the family;
 * - each BGPPeer that applies to this node (by `node`, by `nodeSelector`, or to all): its
 *   `peerIP` and `asNumber`, or every node its `peerSelector` picks; selector peerings hold both
 *   ways (a node the peerSelector picks peers with the nodes the nodeSelector picks);
 * - a node with `spec.bgp.routeReflectorClusterID` is a route reflector: a peer that is not a
 *   reflector of the same cluster is its client.
 * An explicit BGPPeer wins over the mesh for the same address. A node's AS is its own
 * `spec.bgp.asNumber`, else the cluster's.
 */
import { formatAddress, parseAddress, sameAddress, type IpAddress, type IpVersion } from '../net';
import { matches, type Labels } from '../policy/selector';
import type { BgpPeerRule, BgpSettings } from './bgp-resources';

export interface BgpNode {
  readonly name: string;
  readonly labels: Labels;
  /** As Node resources hold them: "10.0.0.11/24". */
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly asNumber?: number;
  readonly routeReflectorClusterId?: string;
}

export type PeerType = 'node-to-node mesh' | 'global' | 'node specific';

export interface Peering {
  /** BIRD's protocol name: Calico's (`Mesh_10_0_0_2`, `Global_…`, `Node_…`). */
  readonly protocol: string;
  readonly type: PeerType;
  readonly address: IpAddress;
  readonly asNumber: number;
  /** The node at the other end, when it is one of ours. */
  readonly node?: string;
  /** This host reflects the peer's routes: it is a route reflector, and the peer its client. */
  readonly reflectorClient: boolean;
}

export interface BgpPlan {
  readonly asNumber: number;
  readonly routerId: IpAddress;
  readonly addresses: { readonly 4?: IpAddress; readonly 6?: IpAddress };
  readonly routeReflectorClusterId?: string;
  readonly peerings: readonly Peering[];
}

/** This node's BGP plan; undefined when it has no IPv4 address (BIRD's router ID). */
export function bgpPlan(self: string, nodes: readonly BgpNode[], rules: readonly BgpPeerRule[], settings: BgpSettings): BgpPlan | undefined {
  const me = nodes.find((n) => n.name === self);
  const routerId = addressOf(me, 4);
  if (!me || !routerId) return undefined;
  const asOf = (node: BgpNode) => node.asNumber ?? settings.asNumber;
  // Reflection is within one AS (iBGP): a peer of another AS is never a client.
  const isClient = (peer: BgpNode | undefined, asNumber: number) => me.routeReflectorClusterId !== undefined && asNumber === asOf(me) && peer?.routeReflectorClusterId !== me.routeReflectorClusterId;
  const peerings = new Map<string, Peering>();
  const add = (type: PeerType, address: IpAddress, asNumber: number, node: BgpNode | undefined) => {
    const key = formatAddress(address);
    const existing = peerings.get(key);
    if (existing && (existing.type !== 'node-to-node mesh' || type === 'node-to-node mesh')) return;
    const prefix = type === 'node-to-node mesh' ? 'Mesh' : type === 'global' ? 'Global' : 'Node';
    peerings.set(key, { protocol: `${prefix}_${key.replace(/[.:]/g, '_')}`, type, address, asNumber, ...(node ? { node: node.name } : {}), reflectorClient: isClient(node, asNumber) });
  };
  const withNodes = (type: PeerType, picked: readonly BgpNode[]) => {
    for (const node of picked) {
      if (node.name === self) continue;
      for (const version of [4, 6] as const) {
        const address = addressOf(node, version);
        if (address && addressOf(me, version)) add(type, address, asOf(node), node);
      }
    }
  };

  for (const rule of rules) {
    const type: PeerType = rule.node === undefined && rule.nodeSelector === undefined ? 'global' : 'node specific';
    const { peer } = rule;
    if ('selector' in peer) {
      if (appliesTo(rule, me)) withNodes(type, nodes.filter((n) => matches(peer.selector, n.labels)));
      // The other way round: a node the peerSelector picks peers with the nodes the rule applies to.
      if (matches(peer.selector, me.labels)) withNodes(type, nodes.filter((n) => appliesTo(rule, n)));
    } else if (appliesTo(rule, me) && !isAddressOf(me, peer.address)) {
      add(type, peer.address, peer.asNumber, nodes.find((n) => isAddressOf(n, peer.address)));
    }
  }
  if (settings.nodeToNodeMeshEnabled) withNodes('node-to-node mesh', nodes);

  return {
    asNumber: asOf(me),
    routerId,
    addresses: { 4: routerId, ...(addressOf(me, 6) ? { 6: addressOf(me, 6)! } : {}) },
    ...(me.routeReflectorClusterId !== undefined ? { routeReflectorClusterId: me.routeReflectorClusterId } : {}),
    peerings: [...peerings.values()].sort((a, b) => a.protocol.localeCompare(b.protocol)),
  };
}

function appliesTo(rule: BgpPeerRule, node: BgpNode): boolean {
  if (rule.node !== undefined) return rule.node === node.name;
  if (rule.nodeSelector !== undefined) return matches(rule.nodeSelector, node.labels);
  return true;
}

function addressOf(node: BgpNode | undefined, version: IpVersion): IpAddress | undefined {
  const text = version === 4 ? node?.ipv4Address : node?.ipv6Address;
  if (!text) return undefined;
  try {
    return parseAddress(text.split('/')[0]!);
  } catch {
    return undefined;
  }
}

function isAddressOf(node: BgpNode, address: IpAddress): boolean {
  const own = addressOf(node, address.version);
  return own !== undefined && sameAddress(own, address);
}
