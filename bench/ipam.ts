/**
 * IPAM throughput against raw etcd, on one local etcd in one run:
 * - etcd_txn_per_s: sequential compare-and-swap transactions (one key, guarded by its revision)
 *   from the same client: the floor an allocation cannot beat;
 * - allocs_per_s: sequential auto-assigns of one IPv4 address, each with its own handle;
 *   measured in alternating rounds with the raw transactions so that drift hits both alike;
 * - claim_ratio: median time for a new host to claim a block and allocate from it when the
 *   cluster holds 1000 blocks, over the same with 10 blocks (a /12 pool of /26 blocks).
 */
import { Datastore, encodeAffinity, encodeBlock, etcdSettingsFrom } from '../shared/datastore';
import { newBlock } from '../shared/ipam/block';
import { candidateIndexes } from '../shared/ipam/candidates';
import { Ipam } from '../shared/ipam/ipam';
import { blockAt, poolFromEntry } from '../shared/ipam/pool';
import { recordFromBlock } from '../shared/ipam/records';
import { EtcdServer } from '../sim/etcd';
import { median, nowMs, round } from './stats';

const ROUNDS = 4;
const PER_ROUND = 500;
const CLAIMS = 40;

export async function benchIpam(): Promise<Record<string, number>> {
  const etcd = await EtcdServer.start();
  const clients: Datastore[] = [];
  const connect = async (prefix: string) => {
    const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: etcd.endpoint }, {}), prefix });
    clients.push(ds);
    return ds;
  };
  try {
    const ds = await connect('/bench-throughput/calico');
    const ipam = new Ipam(ds);
    await ipam.createPool('bench', { cidr: '10.0.0.0/16' });
    await ipam.autoAssign({ handle: 'warm.up', node: 'bench-host', num4: 1, num6: 0 });
    const casKey = '/bench-throughput/cas';
    let revision = (await ds.kv.txn([{ key: casKey, put: '0' }]) as { revision: string }).revision;

    let txnMs = 0;
    let allocMs = 0;
    let allocations = 0;
    for (let r = 0; r < ROUNDS; r++) {
      let start = nowMs();
      for (let i = 0; i < PER_ROUND; i++) {
        const outcome = await ds.kv.txn([{ key: casKey, put: String(i), expect: { modRevision: revision } }]);
        if (!outcome.ok) throw new Error('benchmark CAS lost a race it cannot have');
        revision = outcome.revision;
      }
      txnMs += nowMs() - start;
      start = nowMs();
      for (let i = 0; i < PER_ROUND; i++) {
        await ipam.autoAssign({ handle: `bench.${allocations++}`, node: 'bench-host', num4: 1, num6: 0 });
      }
      allocMs += nowMs() - start;
    }
    const etcdTxnPerS = (ROUNDS * PER_ROUND) / (txnMs / 1000);
    const allocsPerS = (ROUNDS * PER_ROUND) / (allocMs / 1000);
    console.log(`raw CAS transactions: ${round(etcdTxnPerS, 0)}/s; auto-assigns: ${round(allocsPerS, 0)}/s`);

    const claimMs: Record<number, number> = {};
    for (const existing of [10, 1000]) {
      const prefix = `/bench-claim-${existing}/calico`;
      const claimDs = await connect(prefix);
      const claimIpam = new Ipam(claimDs);
      await claimIpam.createPool('wide', { cidr: '10.16.0.0/12', blockSize: 26 });
      await seedBlocks(claimDs, existing);
      const samples: number[] = [];
      for (let i = 0; i < CLAIMS; i++) {
        const start = nowMs();
        await claimIpam.autoAssign({ handle: `claim.${i}`, node: `new-host-${i}`, num4: 1, num6: 0 });
        samples.push(nowMs() - start);
      }
      claimMs[existing] = median(samples);
      console.log(`claim with ${existing} blocks in the cluster: median ${round(claimMs[existing]!)} ms`);
    }
    return {
      allocs_per_s: round(allocsPerS, 1),
      etcd_txn_per_s: round(etcdTxnPerS, 1),
      ratio: round(allocsPerS / etcdTxnPerS, 3),
      claim_ms_10: round(claimMs[10]!, 3),
      claim_ms_1000: round(claimMs[1000]!, 3),
      claim_ratio: round(claimMs[1000]! / claimMs[10]!, 3),
    };
  } finally {
    for (const ds of clients) ds.close();
    await etcd.destroy();
  }
}

/** Writes `count` blocks (with their affinities) of other hosts at random places in the pool. */
async function seedBlocks(ds: Datastore, count: number): Promise<void> {
  const pool = poolFromEntry((await ds.kv.list(ds.keys.resourcePrefix('IPPool')))[0]!);
  const total = 1n << BigInt(pool.blockSize - pool.cidr.prefix);
  const indexes = candidateIndexes(total, count);
  for (let i = 0; i < indexes.length; i += 50) {
    await ds.kv.txn(indexes.slice(i, i + 50).flatMap((index, j) => {
      const cidr = blockAt(pool, index);
      const host = `existing-${i + j}`;
      return [
        { key: ds.keys.block(cidr), put: encodeBlock(recordFromBlock(newBlock(cidr, host))) },
        { key: ds.keys.affinity(host, cidr), put: encodeAffinity({ state: 'confirmed', deleted: false }) },
      ];
    }));
  }
}
