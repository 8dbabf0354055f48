/**
 * A cluster's worth of records, written straight into etcd in the layout the product writes, fast:
 * hosts (Node records), their blocks and affinities, allocations with their handles and workload
 * endpoints, and a few planted leaks (allocations whose endpoint is gone). Transactions of 100
 * puts, several in flight (etcd allows 128 operations per transaction).
 */
import { encodeAffinity, encodeBlock, encodeHandle, encodeResource, type Datastore, type TxnOp } from '../shared/datastore';
import { endpointNameOf, handleOf, hostVethName, type CniAttachment } from '../shared/endpoints/identity';
import { buildWorkloadEndpoint } from '../shared/endpoints/workload-endpoint';
import { autoAssign, newBlock } from '../shared/ipam/block';
import { Ipam } from '../shared/ipam/ipam';
import { blockAt } from '../shared/ipam/pool';
import { recordFromBlock } from '../shared/ipam/records';
import { formatAddress } from '../shared/net/address';
import { formatCidr } from '../shared/net/cidr';

export interface ScaleSpec {
  readonly hosts: number;
  readonly blocks: number;
  readonly allocations: number;
  /** Allocations left without their endpoint (old enough to be leaks). */
  readonly leaks: number;
  /** A pool large enough for `blocks` /26 blocks. */
  readonly pool: string;
}

export interface ScaleData {
  readonly hosts: string[];
  /** The addresses planted as leaks, and their hosts. */
  readonly leaks: { address: string; host: string }[];
  readonly keys: number;
}

const NETWORKS = 10;
const PUTS_PER_TXN = 100;
const IN_FLIGHT = 8;
/** Old enough for any grace period. */
const TIMESTAMP = '2026-01-01T00:00:00.000Z';

export function hostName(i: number): string {
  return `host-${String(i).padStart(4, '0')}`;
}

export async function loadScaleData(ds: Datastore, spec: ScaleSpec): Promise<ScaleData> {
  const ipam = new Ipam(ds);
  const pool = await ipam.createPool('scale', { cidr: spec.pool, blockSize: 26 });
  const poolValue = (await ipam.pools()).find((p) => p.name === pool.metadata.name)!;
  const hosts = Array.from({ length: spec.hosts }, (_, i) => hostName(i));
  const puts: TxnOp[] = [];
  const put = (key: string, value: string) => puts.push({ key, put: value });

  hosts.forEach((host, i) => {
    const node = { kind: 'Node' as const, apiVersion: 'projectcalico.org/v3' as const, metadata: { name: host, uid: `uid-${host}`, creationTimestamp: TIMESTAMP }, spec: { bgp: { ipv4Address: `172.20.${i >> 8}.${i & 255}/16` } } };
    put(ds.keys.resource('Node', host), encodeResource(node));
  });

  const leakEvery = Math.max(1, Math.floor(spec.allocations / Math.max(1, spec.leaks)));
  const leaks: ScaleData['leaks'] = [];
  let allocated = 0;
  for (let b = 0; b < spec.blocks; b++) {
    const cidr = blockAt(poolValue, BigInt(b));
    const host = hosts[b % hosts.length]!;
    // Spread the allocations evenly over the blocks.
    const count = Math.floor(((b + 1) * spec.allocations) / spec.blocks) - Math.floor((b * spec.allocations) / spec.blocks);
    let block = newBlock(cidr, host);
    for (let k = 0; k < count; k++, allocated++) {
      const network = `net-${allocated % NETWORKS}`;
      const attachment: CniAttachment = { orchestrator: 'cni', node: host, network, containerId: `c${String(allocated).padStart(7, '0')}`, ifname: 'eth0' };
      const handle = handleOf(attachment);
      const attribute = { handle_id: handle, secondary: { orchestrator: 'cni', network, container: attachment.containerId, interface: 'eth0', node: host, timestamp: TIMESTAMP } };
      const { block: after, addresses } = autoAssign(block, 1, attribute);
      block = after;
      put(ds.keys.handle(handle), encodeHandle({ block: { [formatCidr(cidr)]: 1 }, deleted: false }));
      if (allocated % leakEvery === leakEvery - 1 && leaks.length < spec.leaks) {
        leaks.push({ address: formatAddress(addresses[0]!), host });
        continue;
      }
      const endpoint = buildWorkloadEndpoint(attachment, { containerID: attachment.containerId, addresses, profiles: [network], interfaceName: hostVethName(attachment), mac: '5e:2b:7c:01:aa:10' });
      endpoint.metadata.uid = `uid-${attachment.containerId}`;
      endpoint.metadata.creationTimestamp = TIMESTAMP;
      put(ds.keys.resource('WorkloadEndpoint', endpointNameOf(attachment), endpoint.metadata.namespace), encodeResource(endpoint));
    }
    put(ds.keys.block(cidr), encodeBlock(recordFromBlock(block)));
    put(ds.keys.affinity(host, cidr), encodeAffinity({ state: 'confirmed', deleted: false }));
  }

  const batches: TxnOp[][] = [];
  for (let i = 0; i < puts.length; i += PUTS_PER_TXN) batches.push(puts.slice(i, i + PUTS_PER_TXN));
  for (let i = 0; i < batches.length; i += IN_FLIGHT) {
    await Promise.all(batches.slice(i, i + IN_FLIGHT).map((batch) => ds.kv.txn(batch)));
  }
  return { hosts, leaks, keys: puts.length };
}
