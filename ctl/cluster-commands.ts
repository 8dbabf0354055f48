/** `calicoctl datastore init`, `node status`, `pool add | rm`. */
import { randomBytes } from 'node:crypto';
import type { Datastore } from '../shared/datastore';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds } from '../shared/ipam/pool';
import { formatCidr } from '../shared/net';
import { messageOf } from '../shared/errors';
import { CtlError } from './errors';
import { parsePoolCidr } from './ipam-commands';
import { table } from './output';
import { ResourceClient } from './resource-client';

export const CALICO_VERSION = 'calico-mesos-0.1.0';

export async function datastoreInit(ds: Datastore, ipam: Ipam, defaultPool: string | undefined): Promise<string> {
  const lines: string[] = [];
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

export async function nodeStatus(ds: Datastore, ipam: Ipam): Promise<string> {
  const [nodes, blocks, endpoints, pools] = await Promise.all([ds.resources.list('Node'), ipam.listBlocks(), ds.resources.list('WorkloadEndpoint'), ipam.pools()]);
  const names = new Set([...nodes.map((n) => n.metadata.name), ...blocks.map((b) => b.affinity?.replace(/^host:/, '')).filter((n): n is string => !!n)]);
  const rows = [...names].sort().map((name) => {
    const node = nodes.find((n) => n.metadata.name === name);
    const own = blocks.filter((b) => b.affinity === `host:${name}`);
    const inPools = own.filter((b) => pools.some((p) => poolHolds(p, b.cidr)));
    return [
      name,
      node?.spec.bgp?.ipv4Address ?? (node ? '' : '(no Node record)'),
      String(own.length),
      String(own.reduce((n, b) => n + b.inUse, 0)),
      String(endpoints.filter((e) => e.spec.node === name).length),
      inPools.map((b) => formatCidr(b.cidr)).join(','),
    ];
  });
  return table(['NODE', 'ADDRESS', 'BLOCKS', 'IPS IN USE', 'ENDPOINTS', 'BLOCK CIDRS'], rows);
}
