import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { CalicoError } from '../../shared/errors';
import { formatAddress } from '../../shared/net/address';
import { cidrContains, parseCidr } from '../../shared/net/cidr';
import type { Ipam } from '../../shared/ipam/ipam';
import { useEtcd } from '../helpers/etcd-hooks';
import { IpamEnv } from '../helpers/ipam-env';
import { readIpamState } from '../helpers/ipam-state';

const envs: IpamEnv[] = [];
const setup = useEtcd(test, envs);

const HOSTS = ['host-a', 'host-b', 'host-c', 'host-d'];
const PER_HOST = 60;
const WORKERS_PER_HOST = 5;

interface Outcome {
  readonly host: string;
  readonly handle: string;
  readonly addresses: string[];
  readonly error?: unknown;
}

/**
 * Each host runs WORKERS_PER_HOST concurrent loops of single-address allocations through its own
 * client, recording into `outcomes` as they go. A worker pauses after an error, as a runtime
 * retrying a failed ADD would, so that work goes on across an outage.
 */
async function allocateEverywhere(ipams: Map<string, Ipam>, outcomes: Outcome[], perHost = PER_HOST): Promise<Outcome[]> {
  await Promise.all(HOSTS.flatMap((host) => Array.from({ length: WORKERS_PER_HOST }, async (_, worker) => {
    for (let i = worker; i < perHost; i += WORKERS_PER_HOST) {
      const handle = `net.${host}-${i}`;
      try {
        const got = await ipams.get(host)!.autoAssign({ handle, node: host, num4: 1, num6: 0 });
        outcomes.push({ host, handle, addresses: got.ipv4.map(formatAddress) });
      } catch (error) {
        outcomes.push({ host, handle, addresses: [], error });
        await sleep(250);
      }
    }
  })));
  return outcomes;
}

async function hostsWithPool(label: string, timeoutMs?: number) {
  const env = new IpamEnv(setup.etcd, label, timeoutMs ? { timeoutMs } : {});
  envs.push(env);
  const admin = await env.ipam();
  await admin.createPool('pool', { cidr: '10.100.0.0/16', blockSize: 28 });
  await admin.setConfig({ strict_affinity: true, auto_allocate_blocks: true, maxBlocksPerHost: 0 });
  const ipams = new Map<string, Ipam>();
  for (const host of HOSTS) ipams.set(host, await env.ipam());
  return { env, admin, ipams, ds: await env.datastore() };
}

test.serial('ipam concurrency - 4 hosts allocate 240 addresses at once: unique, in their own blocks, no leak after release', async (t) => {
  const { admin, ipams, ds } = await hostsWithPool('four-hosts');
  const outcomes = await allocateEverywhere(ipams, []);
  t.deepEqual(outcomes.filter((o) => o.error).map((o) => String(o.error)), []);
  const all = outcomes.flatMap((o) => o.addresses);
  t.is(all.length, HOSTS.length * PER_HOST);
  t.is(new Set(all).size, all.length, 'every address is unique');

  const state = await readIpamState(ds);
  t.deepEqual(state.problems, []);
  t.is(state.allocated.size, all.length);
  for (const outcome of outcomes) {
    const ownBlocks = state.blocks.filter((b) => b.affinity === `host:${outcome.host}`).map((b) => parseCidr(b.cidr));
    for (const text of outcome.addresses) {
      t.true(ownBlocks.some((c) => cidrContains(c, { version: 4, value: BigInt(text.split('.').reduce((a, o) => a * 256 + Number(o), 0)) })), `${text} of ${outcome.host} is in one of its blocks`);
      t.is(state.allocated.get(text), outcome.handle);
    }
  }

  await Promise.all(outcomes.map((o) => ipams.get(o.host)!.releaseByHandle(o.handle)));
  const released = await readIpamState(ds);
  t.is(released.allocated.size, 0, 'no allocation left');
  t.is(released.handles.size, 0, 'no handle left');
  t.deepEqual(released.problems, []);
  for (const host of HOSTS) await admin.releaseEmptyBlocks(host);
  const empty = await readIpamState(ds);
  t.is(empty.blocks.length, 0, 'no empty block left');
  t.is(empty.affinities.length, 0, 'no affinity left');
});

test.serial('ipam concurrency - etcd killed and restarted mid-way: clean errors, nothing handed out twice, nothing leaked', async (t) => {
  const { env, ipams } = await hostsWithPool('restart', 1500);
  const outcomes: Outcome[] = [];
  const running = allocateEverywhere(ipams, outcomes, 100);
  for (let i = 0; i < 200 && outcomes.length < 40; i++) await sleep(10);
  await setup.etcd.stop('SIGKILL');
  await sleep(1500);
  const duringOutage = outcomes.length;
  await setup.etcd.resume();
  await running;
  t.true(outcomes.slice(duringOutage).some((o) => !o.error), 'allocations succeed again after the restart');

  const failed = outcomes.filter((o) => o.error);
  const succeeded = outcomes.filter((o) => !o.error);
  t.log(`${succeeded.length} succeeded, ${failed.length} failed cleanly`);
  for (const f of failed) {
    t.true(f.error instanceof CalicoError, `a clean error, got ${String(f.error)}`);
    t.regex((f.error as Error).message, new RegExp(setup.etcd.endpoint.replace(/[.:/]/g, '\\$&')), 'the error names the endpoint');
  }
  t.true(failed.length > 0, 'the outage was felt');
  const handedOut = succeeded.flatMap((o) => o.addresses);
  t.is(new Set(handedOut).size, handedOut.length, 'no address handed out twice');

  // The short deadline was for the outage; checks and cleanup afterwards run with the default one,
  // as a runtime's later DELs would: a busy 2-core machine may take longer than 1.5 s for one call.
  const after = env.with({});
  envs.push(after);
  const checker = await after.datastore();
  const state = await readIpamState(checker);
  t.deepEqual(state.problems, []);
  for (const o of succeeded) t.is(state.allocated.get(o.addresses[0]!), o.handle, 'every success is recorded under its own handle');

  // What a CNI DEL or a failed ADD's cleanup does: release by handle, for everyone.
  const cleaners = new Map<string, Ipam>();
  for (const host of HOSTS) cleaners.set(host, await after.ipam());
  await Promise.all(outcomes.map((o) => cleaners.get(o.host)!.releaseByHandle(o.handle)));
  for (const host of HOSTS) await cleaners.get(host)!.releaseEmptyBlocks(host);
  const empty = await readIpamState(checker);
  t.is(empty.allocated.size, 0);
  t.is(empty.handles.size, 0);
  t.is(empty.blocks.length, 0);
  t.deepEqual(empty.problems, []);
});
