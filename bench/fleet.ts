/**
 * The control plane's cost as the cluster grows (`npm run bench -- fleet`).
 *
 * (a) One node daemon, a host "probe" with no workloads, in a cluster of 10 hosts and in one of
 *     1,000 (Calico's layout, loaded straight into etcd, the same 62.5 addresses per block at both
 *     sizes). Other hosts' events, one every SPACING_MS: block claims, Node changes, endpoint adds,
 *     label changes and deletes. Per event: the daemon's CPU (every thread's, from /proc) and the
 *     bytes it receives from etcd (its host's link counter: nothing else runs there), each less
 *     what it spends idle over as long, in the median of SLICES slices. Also the daemon's RSS once settled (after
 *     the events) and at its peak (the start-up read), and the time from its start to its first
 *     full policy.
 * (b) LAG_DAEMONS real daemons (policy off: routes are what is timed) over the 1,000 hosts'
 *     records; other hosts claim LAG_RATE blocks a second for LAG_SECONDS. Each daemon's lag from
 *     the claim's commit to the route in its host's kernel (`ip monitor`), at p99; etcd's CPU and
 *     bytes sent over the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeDaemon } from '../sim/daemon';
import { EtcdGrpcProxy } from '../sim/etcd-proxy';
import type { EtcdServer } from '../sim/etcd';
import type { MesosAgent } from '../sim/mesos-agent';
import { hostName, loadScaleData } from '../sim/scale-data';
import { waitFor } from '../sim/wait';
import { CniWorld } from '../sim/world';
import { encodeAffinity, encodeBlock, encodeHandle, type Datastore, type Resource } from '../shared/datastore';
import { autoAssign, newBlock } from '../shared/ipam/block';
import { recordFromBlock } from '../shared/ipam/records';
import { hostVethName, type CniAttachment } from '../shared/endpoints/identity';
import { buildWorkloadEndpoint } from '../shared/endpoints/workload-endpoint';
import type { Ipam } from '../shared/ipam/ipam';
import { formatAddress, formatCidr, parseCidr } from '../shared/net';
import { median, nowMs, round } from './stats';

const SCALES = [
  { label: '10', hosts: 10, blocks: 16, allocations: 1000 },
  { label: '1000', hosts: 1000, blocks: 1600, allocations: 100_000 },
] as const;
const EVENTS = 100;
/** Events are measured in this many slices (see probeCosts). */
const SLICES = 10;
const WARM_UP_EVENTS = 20;
const SPACING_MS = 100;
const KINDS = ['claim', 'node', 'endpoint_add', 'endpoint_label', 'endpoint_delete'] as const;
type EventKind = (typeof KINDS)[number];
/** The probe's address: in the loaded hosts' subnet, so that its static routes to them can be made. */
const PROBE_ADDRESS = '172.20.255.254/16';
const LAG_DAEMONS = 20;
const LAG_RATE = 20;
const LAG_SECONDS = 60;
/** After the first policy, before anything is measured. */
const SETTLE_MS = 20_000;
const FRESH_POOL = '10.200.0.0/16';

interface Scenario {
  readonly ds: Datastore;
  readonly ipam: Ipam;
  readonly prefix: string;
  readonly hosts: readonly string[];
}

export async function benchFleet(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  try {
    const figures: Record<string, number> = {};
    const probe = await world.addAgent();
    await probe.host.ip('addr', 'add', PROBE_ADDRESS, 'dev', 'eth0');
    const perEvent: Record<string, Record<EventKind, { cpuMs: number; bytes: number }>> = {};
    let big: Scenario | undefined;
    for (const scale of SCALES) {
      const scenario = await load(world, scale);
      const { costs, rssMb, peakMb, firstPolicyS } = await probeCosts(world, probe, scenario);
      perEvent[scale.label] = costs;
      for (const kind of KINDS) {
        figures[`${kind}_cpu_ms_${scale.label}`] = round(costs[kind].cpuMs);
        figures[`${kind}_bytes_${scale.label}`] = Math.round(costs[kind].bytes);
      }
      figures[`rss_mb_${scale.label}`] = round(rssMb, 1);
      figures[`rss_peak_mb_${scale.label}`] = round(peakMb, 1);
      figures[`first_policy_s_${scale.label}`] = round(firstPolicyS);
      if (scale.hosts === 1000) big = scenario;
    }
    const ratio = (kind: EventKind, what: 'cpuMs' | 'bytes') => perEvent['1000']![kind][what] / Math.max(perEvent['10']![kind][what], what === 'cpuMs' ? 0.5 : 200);
    figures.cpu_ms_max_1000 = round(Math.max(...KINDS.map((k) => perEvent['1000']![k].cpuMs)));
    figures.cpu_ratio_max = round(Math.max(...KINDS.map((k) => ratio(k, 'cpuMs'))));
    figures.bytes_ratio_max = round(Math.max(...KINDS.map((k) => ratio(k, 'bytes'))));
    Object.assign(figures, await lag(world, big!, world.fabric.etcd.hostEndpoint, ''));
    const proxy = await EtcdGrpcProxy.start([world.fabric.etcd.hostEndpoint], { netnsPath: world.fabric.fabric.path, address: new URL(world.fabric.etcd.hostEndpoint).hostname });
    try {
      Object.assign(figures, await lag(world, big!, proxy.endpoint, '_proxy'));
    } finally {
      await proxy.destroy();
    }
    return figures;
  } finally {
    await world.destroy();
  }
}

async function load(world: CniWorld, scale: (typeof SCALES)[number]): Promise<Scenario> {
  const prefix = `/bench-fleet-${scale.label}/calico`;
  const { ds, ipam } = await world.datastore(prefix);
  const started = nowMs();
  const data = await loadScaleData(ds, { ...scale, leaks: 0, pool: '10.64.0.0/10' });
  // Where other hosts claim new blocks (of one address).
  await ipam.createPool('fresh', { cidr: FRESH_POOL, blockSize: 32 });
  console.log(`${scale.hosts} hosts: ${data.keys} keys loaded in ${round((nowMs() - started) / 1000)} s`);
  // etcd digests a bulk load for seconds after it (its snapshot, compaction of the backend): a
  // daemon's start is timed against an etcd at rest, as it finds one on a running cluster.
  await waitFor('etcd at rest after the load', async () => {
    const before = await etcdMetric(world.fabric.etcd, 'process_cpu_seconds_total');
    await sleep(1000);
    return (await etcdMetric(world.fabric.etcd, 'process_cpu_seconds_total')) - before < 0.05;
  }, 60_000, 0);
  return { ds, ipam, prefix, hosts: data.hosts };
}

function daemonArgs(etcdEndpoint: string, prefix: string, node: string, address: string, policy: boolean): string[] {
  return ['--etcd-endpoints', etcdEndpoint, '--etcd-prefix', prefix, '--nodename', node, '--node-address', address, '--backend', 'static',
    '--gc-interval', '0', '--block-release-delay', '0', '--metrics-address', '', ...(policy ? [] : ['--no-policy'])];
}

async function probeCosts(world: CniWorld, probe: MesosAgent, scenario: Scenario) {
  const started = nowMs();
  const daemon = await NodeDaemon.start(probe.host, daemonArgs(world.fabric.etcd.hostEndpoint, scenario.prefix, 'probe', PROBE_ADDRESS, true));
  try {
    await waitFor('the first policy', () => daemon.stderr.includes('policy programmed'), 120_000, 5);
    const firstPolicyS = (nowMs() - started) / 1000;
    await waitFor('routes to every host\'s blocks', async () => (await probe.host.json<unknown[]>('route', 'show', 'proto', '80')).length >= scenario.hosts.length, 120_000, 200);
    console.log(`probe over ${scenario.hosts.length} hosts: first policy ${round(firstPolicyS)} s after start`);
    // V8 gives back what the start-up read took some seconds later: that work is not an event's.
    await sleep(SETTLE_MS);
    const costs = {} as Record<EventKind, { cpuMs: number; bytes: number }>;
    const events = new EventMaker(scenario);
    for (const kind of KINDS) {
      // Unmeasured first: the daemon's code for this kind of event compiled, its start-up settled.
      await events.run(kind, WARM_UP_EVENTS);
      // Slices of events, each less the daemon's idle use over as long right after it (timers, the
      // status report); the median slice, so that one slice a collection of the whole heap fell
      // in (at 1,000 hosts, a hundred milliseconds) is not spread over every event.
      const slices: { cpuMs: number; bytes: number }[] = [];
      for (let i = 0; i < SLICES; i++) {
        const busy = await usageWhile(daemon.pid, probe, () => events.run(kind, EVENTS / SLICES));
        const idle = await usageWhile(daemon.pid, probe, () => sleep((EVENTS / SLICES) * SPACING_MS + 1000));
        slices.push({ cpuMs: Math.max(0, busy.cpuMs - idle.cpuMs) / (EVENTS / SLICES), bytes: Math.max(0, busy.bytes - idle.bytes) / (EVENTS / SLICES) });
      }
      costs[kind] = { cpuMs: median(slices.map((s) => s.cpuMs)), bytes: median(slices.map((s) => s.bytes)) };
      console.log(`  ${kind}: ${round(costs[kind].cpuMs)} ms CPU, ${Math.round(costs[kind].bytes)} bytes from etcd per event`);
    }
    // Steady state, minutes after the start (V8 gives back what the start-up read took a while after).
    const rssMb = memoryOf(daemon.pid, 'VmRSS');
    const peakMb = memoryOf(daemon.pid, 'VmHWM');
    console.log(`  RSS ${round(rssMb, 1)} MB, at its peak (the start) ${round(peakMb, 1)} MB`);
    return { costs, rssMb, peakMb, firstPolicyS };
  } finally {
    await daemon.destroy();
  }
}

/** Other hosts' events, written as the product writes them. */
class EventMaker {
  private n = 0;
  /** Endpoints added and not yet deleted, oldest first. */
  private readonly added: { endpoint: Resource<'WorkloadEndpoint'>; handle: string }[] = [];

  constructor(private readonly scenario: Scenario) {}

  async run(kind: EventKind, count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const due = nowMs() + SPACING_MS;
      await this.one(kind);
      await sleep(Math.max(0, due - nowMs()));
    }
    await sleep(1000);
  }

  private host(): string {
    return this.scenario.hosts[this.n++ % this.scenario.hosts.length]!;
  }

  async one(kind: EventKind): Promise<void> {
    const { ds, ipam } = this.scenario;
    switch (kind) {
      case 'claim':
        await claimBlock(ds, this.host(), this.n);
        return;
      case 'node': {
        const node = (await ds.resources.get('Node', this.host()))!;
        await ds.resources.update({ ...node, metadata: { ...node.metadata, labels: { rack: `r${this.n % 7}` } } });
        return;
      }
      case 'endpoint_add': {
        const node = this.host();
        const attachment: CniAttachment = { orchestrator: 'cni', node, network: 'net-0', containerId: `bench${this.n}`, ifname: 'eth0' };
        const handle = `bench-${this.n}`;
        const { ipv4 } = await ipam.autoAssign({ handle, node, num4: 1, num6: 0, pools4: ['scale'] });
        const endpoint = await ds.resources.create(buildWorkloadEndpoint(attachment, { containerID: attachment.containerId, addresses: ipv4, profiles: ['net-0'], interfaceName: hostVethName(attachment), mac: '5e:2b:7c:01:aa:10' }));
        this.added.push({ endpoint, handle });
        return;
      }
      case 'endpoint_label': {
        const added = this.added[this.n++ % this.added.length]!;
        const { endpoint } = added;
        added.endpoint = await ds.resources.update({ ...endpoint, metadata: { ...endpoint.metadata, labels: { ...endpoint.metadata.labels, tier: `t${this.n}` } } });
        return;
      }
      case 'endpoint_delete': {
        const { endpoint, handle } = this.added.shift()!;
        await ds.resources.delete('WorkloadEndpoint', endpoint.metadata.name, endpoint.metadata.namespace);
        await ipam.releaseByHandle(handle);
        return;
      }
    }
  }
}

/**
 * (b): LAG_DAEMONS daemons over the big cluster's records, reaching etcd at `etcdEndpoint` (etcd
 * itself, or its gRPC proxy); LAG_RATE remote block claims a second. Figures end in `suffix`.
 */
let lagRun = 0;
async function lag(world: CniWorld, scenario: Scenario, etcdEndpoint: string, suffix: string): Promise<Record<string, number>> {
  const run = lagRun++;
  const agents: MesosAgent[] = [];
  const daemons: NodeDaemon[] = [];
  const monitors: ChildProcess[] = [];
  /** When each daemon's host got a route to each address. */
  const arrivals: Map<string, number>[] = [];
  try {
    for (let i = 0; i < LAG_DAEMONS; i++) {
      const agent = await world.addAgent();
      const address = `172.20.${250 - run}.${i + 1}/16`;
      await agent.host.ip('addr', 'add', address, 'dev', 'eth0');
      agents.push(agent);
      daemons.push(await NodeDaemon.start(agent.host, daemonArgs(etcdEndpoint, scenario.prefix, `lag-${run}-${i}`, address, false)));
    }
    for (const [i, agent] of agents.entries()) {
      await waitFor(`daemon ${i}'s routes`, async () => (await agent.host.json<unknown[]>('route', 'show', 'proto', '80')).length >= scenario.hosts.length, 180_000, 500);
      const seen = new Map<string, number>();
      arrivals.push(seen);
      const monitor = spawn('nsenter', [`--net=${agent.host.path}`, 'ip', '-o', 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let rest = '';
      monitor.stdout!.on('data', (chunk: Buffer) => {
        const at = nowMs();
        const lines = (rest + chunk.toString()).split('\n');
        rest = lines.pop()!;
        for (const line of lines) if (/ proto 80\b/.test(line) && !line.startsWith('Deleted')) seen.set(line.split(' ')[0]!.replace(/\/32$/, ''), at);
      });
      monitors.push(monitor);
    }
    await sleep(1000);
    const cpuBefore = await etcdMetric(world.fabric.etcd, 'process_cpu_seconds_total');
    const bytesBefore = await etcdMetric(world.fabric.etcd, 'etcd_network_client_grpc_sent_bytes_total');
    const committed = new Map<string, number>();
    const claims: Promise<void>[] = [];
    const startedAt = nowMs();
    for (let n = 0; n < LAG_RATE * LAG_SECONDS; n++) {
      await sleep(Math.max(0, startedAt + (n * 1000) / LAG_RATE - nowMs()));
      claims.push(claimBlock(scenario.ds, hostName(n % scenario.hosts.length), CLAIMS_BEFORE_LAG * (run + 1) + n).then((address) => void committed.set(address, nowMs())));
    }
    await Promise.all(claims);
    const seconds = (nowMs() - startedAt) / 1000;
    await sleep(3000);
    const etcdCpu = (await etcdMetric(world.fabric.etcd, 'process_cpu_seconds_total')) - cpuBefore;
    const etcdBytes = (await etcdMetric(world.fabric.etcd, 'etcd_network_client_grpc_sent_bytes_total')) - bytesBefore;
    const lags: number[] = [];
    let missing = 0;
    for (const seen of arrivals) {
      for (const [address, at] of committed) {
        const arrived = seen.get(address);
        if (arrived === undefined) missing++;
        else lags.push(Math.max(0, arrived - at));
      }
    }
    lags.sort((a, b) => a - b);
    const p = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))] ?? NaN;
    console.log(`lag${suffix} over ${LAG_DAEMONS} daemons, ${committed.size} claims in ${round(seconds)} s: p50 ${round(p(0.5))} ms, p99 ${round(p(0.99))} ms, ${missing} never seen; etcd ${round(etcdCpu)} s CPU, ${round(etcdBytes / 1e6)} MB sent`);
    return {
      [`lag_daemons${suffix}`]: LAG_DAEMONS,
      [`lag_events_per_s${suffix}`]: round(committed.size / seconds, 1),
      [`lag_p50_ms${suffix}`]: round(p(0.5)),
      [`lag_p99_ms${suffix}`]: round(p(0.99)),
      [`lag_missing${suffix}`]: missing,
      [`etcd_cpu_share${suffix}`]: round(etcdCpu / seconds, 3),
      [`etcd_sent_mb_per_s${suffix}`]: round(etcdBytes / 1e6 / seconds, 2),
    };
  } finally {
    for (const monitor of monitors) monitor.kill();
    for (const daemon of daemons) await daemon.destroy();
  }
}

/** Claims made by (a), before (b)'s: each claim's block is new. */
const CLAIMS_BEFORE_LAG = 10_000;

/**
 * Another host claims block number `n` of the fresh pool and allocates its one address, in one
 * transaction, as IPAM writes them (the bench's own writer stays fast: the daemons are measured).
 * Returns the block's address.
 */
async function claimBlock(ds: Datastore, host: string, n: number): Promise<string> {
  const cidr = parseCidr(`10.200.${(n >> 8) & 255}.${n & 255}/32`);
  const handle = `claim-${n}`;
  const { block } = autoAssign(newBlock(cidr, host), 1, { handle_id: handle, secondary: { node: host, timestamp: new Date().toISOString() } });
  const outcome = await ds.kv.txn([
    { key: ds.keys.block(cidr), put: encodeBlock(recordFromBlock(block)), expect: { absent: true } },
    { key: ds.keys.affinity(host, cidr), put: encodeAffinity({ state: 'confirmed', deleted: false }) },
    { key: ds.keys.handle(handle), put: encodeHandle({ block: { [formatCidr(cidr)]: 1 }, deleted: false }) },
  ]);
  if (!outcome.ok) throw new Error(`block ${formatCidr(cidr)} was claimed already`);
  return formatAddress({ version: 4, value: cidr.network });
}

/** A memory figure of /proc/PID/status (VmRSS, VmHWM: the resident set now, and its peak), in MB. */
function memoryOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

/**
 * The daemon's CPU (ms, every thread's, from the scheduler's nanosecond counts) and the bytes its
 * host received (the daemon is all that runs there) while `during` runs.
 */
async function usageWhile(pid: number, host: MesosAgent, during: () => Promise<void>): Promise<{ cpuMs: number; bytes: number }> {
  const cpuNs = () => readdirSync(`/proc/${pid}/task`).reduce((sum, task) => {
    try {
      return sum + Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      return sum; // a thread that ended meanwhile
    }
  }, 0);
  const received = async () => (await host.host.json<{ stats64: { rx: { bytes: number } } }[]>('-s', 'link', 'show', 'dev', 'eth0'))[0]!.stats64.rx.bytes;
  const [cpuBefore, bytesBefore] = [cpuNs(), await received()];
  await during();
  return { cpuMs: (cpuNs() - cpuBefore) / 1e6, bytes: (await received()) - bytesBefore };
}

/** A sample of etcd's own metrics, read over its unix socket. */
function etcdMetric(etcd: EtcdServer, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(etcd.dataDir, 'etcd.sock:0'), path: '/metrics' }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        const line = text.split('\n').find((l) => l.startsWith(`${name} `));
        if (line === undefined) reject(new Error(`etcd has no metric ${name}`));
        else resolve(Number(line.slice(name.length + 1)));
      });
    });
    req.on('error', reject);
    req.end();
  });
}
