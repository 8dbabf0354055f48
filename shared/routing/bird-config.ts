/**
 * BIRD 2's configuration for one host, from its BGP plan, as calico-node renders BIRD's:
 * - exported to peers: only this host's confirmed blocks (each blackholed here, so a packet to a
 *   free address of one is dropped here), the addresses its workloads hold in other hosts' blocks
 *   (borrowed when a pool had no block left; their /32 or /128 wins over the block), and on a
 *   route reflector also the pool routes it reflects; nothing else (not the host's own routes, not
 *   a default route);
 * - imported from peers: routes inside the pools only; programmed into the kernel (with BIRD's own
 *   protocol number, beside the daemon's routes): those learned by BGP, except for pools that
 *   encapsulate (the daemon routes those through its tunnels);
 * - graceful restart with every peer, and kernel routes kept when BIRD stops (`persist`), so that a
 *   restart of BIRD or of the daemon keeps forwarding;
 * - recursive next hops (a mesh across racks) resolve through the host's connected and kernel routes.
 * Pure: the same input renders the same text (golden files in test/golden/bird).
 */
import { formatAddress, formatCidr, type Cidr, type IpVersion } from '../net';
import type { PoolEncapsulation } from '../ipam/pool';
import type { LogSeverity } from './bgp-resources';
import type { BgpPlan, Peering } from './bgp-peers';
import { IPIP_DEVICE, VXLAN_DEVICE } from './desired-routes';

export interface BirdInput {
  readonly node: string;
  readonly plan: BgpPlan;
  readonly ownBlocks: readonly Cidr[];
  readonly pools: readonly PoolEncapsulation[];
  readonly logSeverity: LogSeverity;
}

/** How long peers keep this host's routes while its BIRD restarts. */
export const GRACEFUL_RESTART_SECONDS = 120;

const LOG_CLASSES: Readonly<Record<LogSeverity, string>> = {
  Debug: 'all',
  Info: '{ info, remote, warning, error, auth, fatal, bug }',
  Warning: '{ warning, error, auth, fatal, bug }',
  Error: '{ error, auth, fatal, bug }',
  Fatal: '{ fatal, bug }',
};

export function renderBirdConfig(input: BirdInput): string {
  const { plan } = input;
  const versions = ([4, 6] as const).filter((v) => plan.addresses[v] !== undefined);
  const reflector = plan.routeReflectorClusterId !== undefined;
  const lines = [
    `# BIRD's configuration for node ${input.node}, rendered from etcd by calico-libnetwork.`,
    '# Do not edit: it is rewritten whenever the datastore changes.',
    `router id ${formatAddress(plan.routerId)};`,
    `log stderr ${LOG_CLASSES[input.logSeverity]};`,
    ...(input.logSeverity === 'Debug' ? ['debug protocols { states, events };'] : []),
    'timeformat protocol iso long;',
    '',
    // Both families' tests, whichever sessions there are: the filters below name both.
    ...([4, 6] as const).flatMap((v) => prefixFunctions(v, input.pools, input.ownBlocks)),
    'protocol device {',
    '  scan time 10;',
    '}',
    '',
    '# Connected networks, for next hops that are not neighbours (a mesh across racks).',
    'protocol direct {',
    ...versions.map((v) => `  ipv${v};`),
    `  interface -"cali*", -"${VXLAN_DEVICE}", -"${IPIP_DEVICE}", "*";`,
    '}',
    '',
    ...versions.flatMap((v) => [
      `protocol kernel kernel${v} {`,
      '  learn;',
      '  persist;',
      '  scan time 10;',
      '  merge paths on;',
      '  graceful restart on;',
      `  ipv${v} {`,
      '    import all;',
      `    export where source = RTS_BGP && in_pool${v}() && !encapsulated${v}();`,
      '  };',
      '}',
      '',
      `protocol static own_blocks${v} {`,
      `  ipv${v};`,
      ...input.ownBlocks.filter((b) => b.version === v).map((b) => `  route ${formatCidr(b)} blackhole;`),
      '}',
      '',
    ]),
    '# To peers: this host\'s blocks, the addresses its workloads hold in other hosts\' blocks' + (reflector ? ', and the pool routes it reflects.' : '.'),
    'filter export_to_peers {',
    '  if proto ~ "own_blocks*" then accept;',
    // A workload's own route (learned from the kernel) to an address borrowed from another host's
    // block: peers route it here, ahead of that block (as Calico exports borrowed addresses).
    '  if source = RTS_INHERIT && ifname ~ "cali*" && (in_pool4() || in_pool6()) && !(own_block4() || own_block6()) then accept;',
    ...(reflector ? ['  if source = RTS_BGP && (in_pool4() || in_pool6()) then accept;'] : []),
    '  reject;',
    '}',
    '',
    'filter import_from_peers {',
    '  if in_pool4() || in_pool6() then accept;',
    '  reject;',
    '}',
    '',
    'template bgp calico_peer {',
    `  local as ${plan.asNumber};`,
    '  graceful restart on;',
    `  graceful restart time ${GRACEFUL_RESTART_SECONDS};`,
    // Sessions come up (and back) within seconds: a new host's blocks are routed soon after it starts.
    '  connect delay time 1;',
    '  connect retry time 2;',
    '  error wait time 1, 30;',
    '}',
    '',
    ...plan.peerings.flatMap((p) => peerBlock(p, plan)),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * in_poolN(): the route is inside a pool of the family; encapsulatedN(): inside one that
 * encapsulates; own_blockN(): inside one of this host's blocks.
 */
function prefixFunctions(version: IpVersion, pools: readonly PoolEncapsulation[], ownBlocks: readonly Cidr[]): string[] {
  const ofVersion = pools.filter((p) => p.cidr.version === version);
  const test = (cidrs: readonly Cidr[]) => (cidrs.length === 0 ? 'false' : cidrs.map((c) => `net ~ [ ${formatCidr(c)}+ ]`).join(' || '));
  const encapsulated = ofVersion.filter((p) => p.ipipMode !== 'Never' || p.vxlanMode !== 'Never');
  const fn = (name: string, cidrs: readonly Cidr[]) => [`function ${name}${version}() {`, `  return net.type = NET_IP${version} && (${test(cidrs)});`, '}', ''];
  return [
    ...fn('in_pool', ofVersion.map((p) => p.cidr)),
    ...fn('encapsulated', encapsulated.map((p) => p.cidr)),
    ...fn('own_block', ownBlocks.filter((b) => b.version === version)),
  ];
}

function peerBlock(peering: Peering, plan: BgpPlan): string[] {
  const version = peering.address.version;
  const source = plan.addresses[version];
  return [
    `protocol bgp ${peering.protocol} from calico_peer {`,
    `  description "${peering.type}${peering.node ? `: ${peering.node.replace(/["\\]/g, '')}` : ''}";`,
    `  neighbor ${formatAddress(peering.address)} as ${peering.asNumber};`,
    ...(source ? [`  source address ${formatAddress(source)};`] : []),
    ...(peering.reflectorClient ? ['  rr client;', `  rr cluster id ${plan.routeReflectorClusterId};`] : []),
    // As Calico: within the mesh only the higher address connects, so the two never collide.
    ...(peering.type === 'node-to-node mesh' && source && peering.address.value > source.value ? ['  passive on;'] : []),
    `  ipv${version} {`,
    '    import filter import_from_peers;',
    '    export filter export_to_peers;',
    // iBGP keeps the original next hop (reflected routes, a mesh across racks): resolve it.
    ...(peering.asNumber === plan.asNumber ? ['    gateway recursive;'] : []),
    '  };',
    '}',
    '',
  ];
}
