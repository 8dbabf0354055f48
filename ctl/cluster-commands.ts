/** `calicoctl datastore init`, `node status`, `pool add | rm`. */
import { randomBytes } from 'node:crypto';
import type { Datastore } from '../shared/datastore';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds } from '../shared/ipam/pool';
import { formatCidr } from '../shared/net';
import { nodeOfEndpointName } from '../shared/endpoints/identity';
import { messageOf } from '../shared/errors';
import type { RoutingStatus } from '../shared/routing/status';
import { CtlError } from './errors';
import { parsePoolCidr } from './ipam-commands';
import { table } from './output';
import { ResourceClient } from './resource-client';

export const CALICO_VERSION = 'calico-mesos-0.1.0';

export async function datastoreInit(ds: Datastore, ipam: Ipam, defaultPool: string | undefined): Promise<string> {
  const lines: string[] = [];
  // etcd answered a client that proved nothing: whoever reaches it over the network may rewrite isolation.
  const settings = ds.kv.settings;
  if (settings.certFile === undefined && settings.username === undefined && settings.endpoints.some((e) => !e.startsWith('unix://'))) {
    lines.push('WARNING: etcd answered with neither a client certificate nor a user: anything that reaches it can rewrite every network\'s isolation. Serve it over TLS with --client-cert-auth (and give the plugins, the daemon and calicoctl etcd_cert_file/etcd_key_file), or enable its authentication (etcdctl auth enable; etcd_username/etcd_password). See the README\'s security model.');
  }
  const existing = await ds.resources.get('ClusterInformation', 'default');
  if (!existing) {
    await ds.resources.create({
      kind: 'ClusterInformation',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name: 'default' },
      spec: { clusterGUID: randomBytes(16).toString('hex'), calicoVersion: CALICO_VERSION, clusterType: 'mesos', datastoreReady: true },
    });
    lines.push('ClusterInformation "default" written (datastoreReady: true).');
  } else if (existing.spec.datastoreReady !== true) {
    await ds.resources.update({ ...existing, spec: { ...existing.spec, datastoreReady: true } });
    lines.push('ClusterInformation "default" marked datastoreReady.');
  } else lines.push('ClusterInformation "default" is already initialised.');
  // On Mesos the executor runs in its task's network namespace and talks to its agent: workloads
  // must reach their host. Written if absent, as an operator-visible resource, never overwritten.
  if (!(await ds.resources.get('FelixConfiguration', 'default'))) {
    await ds.resources.create({ kind: 'FelixConfiguration', apiVersion: 'projectcalico.org/v3', metadata: { name: 'default' }, spec: { defaultEndpointToHostAction: 'Accept' } });
    lines.push('FelixConfiguration "default" written (defaultEndpointToHostAction: Accept: executors reach their agents).');
  }
  if (defaultPool) {
    const cidr = parsePoolCidr(defaultPool);
    const name = `default-ipv${cidr.version}-ippool`;
    if ((await ipam.pools()).some((p) => p.name === name)) lines.push(`Pool ${name} exists already.`);
    else {
      await addPool(ipam, defaultPool, { name });
      lines.push(`Pool ${name} (${formatCidr(cidr)}) created.`);
    }
  }
  return lines.join('\n');
}

export async function addPool(ipam: Ipam, cidrText: string, options: { name?: string; blockSize?: string; disabled?: boolean; natOutgoing?: boolean }): Promise<string> {
  const cidr = parsePoolCidr(cidrText);
  const name = options.name ?? `pool-${formatCidr(cidr).replace(/[/:.]+/g, '-').replace(/-+$/, '')}`;
  const blockSize = options.blockSize === undefined ? undefined : Number(options.blockSize);
  if (options.blockSize !== undefined && !Number.isInteger(blockSize)) throw new CtlError('--block-size must be a whole number');
  try {
    await ipam.createPool(name, { cidr: formatCidr(cidr), ...(blockSize ? { blockSize } : {}), disabled: options.disabled ?? false, natOutgoing: options.natOutgoing ?? false });
  } catch (err) {
    throw new CtlError(messageOf(err));
  }
  return `Pool ${name} (${formatCidr(cidr)}) created.`;
}

export async function removePool(ds: Datastore, ipam: Ipam, nameOrCidr: string): Promise<string> {
  const pool = (await ipam.pools()).find((p) => p.name === nameOrCidr || formatCidr(p.cidr) === nameOrCidr);
  if (!pool) throw new CtlError(`no pool is named or has the CIDR "${nameOrCidr}"`);
  await new ResourceClient(ds, ipam).delete('IPPool', pool.name);
  return `Pool ${pool.name} (${formatCidr(pool.cidr)}) removed.`;
}

/**
 * Per host: its address, blocks, addresses in use and endpoints. Read a page at a time and summed
 * per host (endpoints counted from their keys alone), so it costs memory per host, not per workload.
 */
export async function nodeStatus(ds: Datastore, ipam: Ipam): Promise<string> {
  interface HostRow { address?: string; registered: boolean; blocks: number; inUse: number; endpoints: number; cidrs: string[] }
  const hosts = new Map<string, HostRow>();
  const row = (name: string) => {
    let r = hosts.get(name);
    if (!r) hosts.set(name, (r = { registered: false, blocks: 0, inUse: 0, endpoints: 0, cidrs: [] }));
    return r;
  };
  for await (const page of ds.resources.pages('Node', { skipMalformed: true })) {
    for (const node of page) Object.assign(row(node.metadata.name), { registered: true, address: node.spec.bgp?.ipv4Address });
  }
  const pools = await ipam.pools();
  for await (const page of ipam.blockPages()) {
    for (const block of page) {
      if (!block.affinity?.startsWith('host:')) continue;
      const r = row(block.affinity.slice('host:'.length));
      r.blocks++;
      r.inUse += block.inUse;
      if (pools.some((p) => poolHolds(p, block.cidr))) r.cidrs.push(formatCidr(block.cidr));
    }
  }
  for await (const page of ds.kv.pages(ds.keys.resourcePrefix('WorkloadEndpoint'), { keysOnly: true, pageSize: 1000 })) {
    for (const entry of page) {
      const node = nodeOfEndpointName(entry.key.slice(entry.key.lastIndexOf('/') + 1));
      if (node !== undefined) row(node).endpoints++;
    }
  }
  const routing = new Map<string, RoutingStatus>();
  for await (const page of ds.resources.pages('CalicoNodeStatus', { skipMalformed: true })) {
    for (const record of page) routing.set(record.metadata.name, routingStatusOf(record.status));
  }
  const rows = [...hosts.keys()].sort().map((name) => {
    const r = hosts.get(name)!;
    const status = routing.get(name);
    const bgp = status?.birdRunning === false ? 'BIRD not running' : status?.backend === 'bird' ? `${status.peers.filter((p) => p.info === 'Established').length}/${status.peers.length} established` : '';
    return [name, r.address ?? (r.registered ? '' : '(no Node record)'), status?.backend ?? '', bgp, String(r.blocks), String(r.inUse), String(r.endpoints), r.cidrs.join(',')];
  });
  // Hosts no longer there (their Node deleted, nothing left of theirs) are left out.
  const sessions = [...routing.entries()].filter(([name]) => hosts.has(name)).sort(([a], [b]) => a.localeCompare(b)).flatMap(([name, status]) =>
    status.peers.map((p) => [name, p.peerIP, p.type, p.state, p.since, p.info]));
  const hostsTable = table(['NODE', 'ADDRESS', 'BACKEND', 'BGP', 'BLOCKS', 'IPS IN USE', 'ENDPOINTS', 'BLOCK CIDRS'], rows);
  if (sessions.length === 0) return hostsTable;
  // As Calico's `node status` shows its own host's, for every host (each daemon reports its BIRD's every 10 s).
  return `${hostsTable}\n\nBGP sessions\n${table(['NODE', 'PEER ADDRESS', 'PEER TYPE', 'STATE', 'SINCE', 'INFO'], sessions)}`;
}

/** A host's published routing status, read defensively: whatever is not as written becomes blank. */
function routingStatusOf(status: unknown): RoutingStatus {
  const record = (typeof status === 'object' && status !== null ? status : {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  const peers = Array.isArray(record.peers) ? (record.peers as Record<string, unknown>[]) : [];
  return {
    backend: text(record.backend) as RoutingStatus['backend'],
    ...(typeof record.birdRunning === 'boolean' ? { birdRunning: record.birdRunning } : {}),
    peers: peers.map((p) => ({ peerIP: text(p?.peerIP), type: text(p?.type) as RoutingStatus['peers'][number]['type'], state: text(p?.state), since: text(p?.since), info: text(p?.info) })),
  };
}
