/**
 * Policy, on a simulated agent of the bench's own:
 * - converge_ms_p50, converge_ms_p99: from writing a GlobalNetworkPolicy to etcd to the traffic it
 *   allows flowing (a ping every 5 ms from one task to another, the first answer's timestamp), 30
 *   times, through the node daemon; the policy is deleted between rounds;
 * - program_ms_1000: programming the whole table for 1,000 local endpoints and 200 policies
 *   (calculation, script, one nft transaction into an empty namespace), the median of 3;
 *   program_ref_ms: the same transaction's nft floor (an empty table, same namespace);
 * - update_ms_100, update_ms_1000, update_ratio: adding one endpoint to a host that has 100 or
 *   1,000 (the change alone: calculation, script, nft), medians of 15; the ratio of the two;
 * - throughput_ratio: TCP throughput (iperf3, 3 s) between two tasks on one host with 200 policies
 *   in force over the same with policy off (--no-policy), in rounds alternating the two (the
 *   median of the rounds' ratios, here and below);
 * - guard_throughput_ratio: the same with the table's guard (GUARD_RULES: anti-spoofing, what
 *   workloads may not reach, the encapsulations they may not send) over the same without it,
 *   alternating (floor: at least 0.95);
 * - differential_cases, differential_disagreements, differential_delivered: random policies and
 *   packets through the real table against the reference evaluator of Calico's semantics
 *   (test/helpers/policy-differential.ts), 100 scenarios of 100 packets (floor: 0 disagreements).
 */
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyNftScript } from '../shared/dataplane/nftables';
import { FIXED_PART, GUARD_RULES, TABLE } from '../shared/policy/ruleset';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, runDifferential } from '../test/helpers/policy-differential';
import { PolicyCalculator, type EndpointRecord } from '../shared/policy/calculator';
import { Ruleset, copyRuleset, planChanges, renderTable } from '../shared/policy/ruleset';
import { validatePolicy, validateProfile } from '../shared/policy/validate';
import { NodeDaemon } from '../sim/daemon';
import type { MesosAgent } from '../sim/mesos-agent';
import { Netns } from '../sim/netns';
import { waitFor } from '../sim/wait';
import { CniWorld } from '../sim/world';
import { median, nowMs, round } from './stats';

const POLICIES = 200;
const CONVERGE_ROUNDS = 30;
const UPDATE_SAMPLES = 15;
const THROUGHPUT_ROUNDS = 5;
/** The guard's cost is a few per cent: more rounds than the throughput above, to see it through two cores' noise. */
const GUARD_ROUNDS = 15;

/** The fixed part without the guard's rules: what the guard's cost is measured against. */
const UNGUARDED_PART = (() => {
  const guard = new Set<string>([GUARD_RULES.prerouting, ...GUARD_RULES.spoofing, ...GUARD_RULES.forwarded, ...GUARD_RULES.toHost]);
  const rule = new RegExp(`^add rule ${TABLE} \\S+ `);
  return FIXED_PART.split('\n').filter((line) => !guard.has(line.replace(rule, ''))).join('\n');
})();

/** A policy of the bench's 200: it applies to one app of 20 and opens a port to one role of 10. */
function benchPolicyResource(i: number) {
  return {
    kind: 'GlobalNetworkPolicy',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: `bench-${i}` },
    spec: {
      order: i,
      selector: `app == 'app-${i % 20}'`,
      ingress: [
        { action: 'Allow', protocol: 'TCP', source: { selector: `role == 'r${i % 10}'` }, destination: { ports: [8000 + i] } },
        { action: 'Deny', protocol: 'UDP', source: { nets: [`10.${i % 250}.0.0/16`] } },
        { action: 'Pass' },
      ],
      egress: [{ action: 'Pass' }],
    },
  };
}

function benchEndpoint(k: number): EndpointRecord {
  return {
    node: 'bench',
    namespace: 'default',
    interfaceName: `cali${k.toString(16).padStart(11, '0')}`,
    ipv4: [`10.250.${Math.floor(k / 250)}.${k % 250}`],
    ipv6: [],
    labels: { app: `app-${k % 20}`, role: `r${k % 10}` },
    profiles: [`net-${k % 5}`],
  };
}

function benchCalculator(endpoints: number): PolicyCalculator {
  const calc = new PolicyCalculator('bench');
  for (let n = 0; n < 5; n++) {
    calc.setProfile(`net-${n}`, validateProfile({ metadata: { name: `net-${n}` }, spec: { ingress: [{ action: 'Allow', source: { selector: `has(pcn.net-${n})` } }], egress: [{ action: 'Allow' }], labelsToApply: { [`pcn.net-${n}`]: '' } } }));
  }
  for (let i = 0; i < POLICIES; i++) calc.setPolicy(`bench-${i}`, validatePolicy(benchPolicyResource(i)));
  for (let k = 0; k < endpoints; k++) calc.setEndpoint(`ep-${k}`, benchEndpoint(k));
  return calc;
}

/** Whole-table programming and single-endpoint updates, in a namespace of the bench's own. */
async function programming(): Promise<Record<string, number>> {
  const ns = await Netns.create('bench-pol');
  try {
    const full: number[] = [];
    const floor: number[] = [];
    for (let r = 0; r < 3; r++) {
      let start = nowMs();
      await applyNftScript('floor', renderTable(new Ruleset()), { netns: ns.path });
      floor.push(nowMs() - start);
      start = nowMs();
      const calc = benchCalculator(1000);
      await applyNftScript('bench', renderTable(calc.ruleset), { netns: ns.path });
      full.push(nowMs() - start);
    }
    const update = async (endpoints: number): Promise<number> => {
      const calc = benchCalculator(endpoints);
      calc.takeTouched();
      await applyNftScript('bench', renderTable(calc.ruleset), { netns: ns.path });
      const programmed = copyRuleset(calc.ruleset);
      const samples: number[] = [];
      for (let s = 0; s < UPDATE_SAMPLES; s++) {
        const start = nowMs();
        calc.setEndpoint(`new-${s}`, benchEndpoint(endpoints + s));
        const touched = calc.takeTouched();
        const plan = planChanges(programmed, calc.ruleset, touched);
        await applyNftScript('bench', plan.script, { netns: ns.path });
        plan.commit();
        samples.push(nowMs() - start);
      }
      return median(samples);
    };
    const at100 = await update(100);
    const at1000 = await update(1000);
    return { program_ms_1000: round(median(full), 1), program_ref_ms: round(median(floor), 1), update_ms_100: round(at100, 2), update_ms_1000: round(at1000, 2), update_ratio: round(at1000 / at100, 3) };
  } finally {
    await ns.destroy();
  }
}

interface Task {
  readonly id: string;
  readonly ip: string;
}

async function launch(agent: MesosAgent, network: Record<string, unknown>, labels: Record<string, string> = {}): Promise<Task> {
  const id = randomUUID();
  const launched = await agent.launch(id, [{ network: network as never, labels }]);
  if (launched.runs[0]!.code !== 0) throw new Error(launched.runs[0]!.stdout);
  return { id, ip: launched.ips[0]!.ip4!.split('/')[0]! };
}

async function pingWorks(agent: MesosAgent, from: Task, to: Task, expected: boolean): Promise<void> {
  await waitFor(`ping ${expected ? 'answered' : 'dropped'}`, async () => (await agent.container(from.id).ping(to.ip)) === expected, 10_000);
}

/** A ping every 5 ms from `from` to `to`, with the epoch time of each answer. */
function pinger(agent: MesosAgent, from: Task, to: Task) {
  const answers: number[] = [];
  const child = spawn('nsenter', [`--net=${agent.container(from.id).path}`, 'ping', '-D', '-i', '0.005', '-W', '1', to.ip], { stdio: ['ignore', 'pipe', 'ignore'] });
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const match = /^\[(\d+\.\d+)\] \d+ bytes from/.exec(line);
      if (match) answers.push(Number(match[1]) * 1000);
    }
  });
  return { answers, stop: () => child.kill('SIGKILL') };
}

async function iperf(agent: MesosAgent, server: Task, client: Task): Promise<number> {
  const { stdout } = await agent.container(client.id).exec('iperf3', ['-c', server.ip, '-t', '3', '-J'], { timeout: 20_000 });
  return (JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
}

async function endToEnd(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  let daemon: NodeDaemon | undefined;
  try {
    const agent = await world.addAgent();
    const { prefix, ds } = await world.scenario('bench-policy', { v4: '10.211.0.0/16', v6: 'fd00:211::/64' });
    const start = (extra: string[] = []) => NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1', '--no-routes', '--gc-interval', '0', '--metrics-address', '', ...extra]);
    daemon = await start();
    const network = (name: string) => world.network(name, prefix, 'agent1', { daemon_socket: daemon!.cniSocket, log_file_path: '' });
    const a = await launch(agent, network('netA'), { app: 'app-1', role: 'r1' });
    const b = await launch(agent, network('netB'));
    const server = await launch(agent, network('netA'), { app: 'app-3', role: 'r3' });
    const client = await launch(agent, network('netA'), { app: 'app-3', role: 'r3' });
    for (let i = 0; i < POLICIES; i++) await ds.resources.create(benchPolicyResource(i) as never);
    await pingWorks(agent, client, server, true);
    await pingWorks(agent, b, a, false);

    // Convergence: a new ping (a new flow: an answered one would stay allowed by conntrack) from b
    // to a, dropped; allow b -> a, time the first answer; take it back and wait until it is gone.
    const converge: number[] = [];
    for (let r = 0; r < CONVERGE_ROUNDS; r++) {
      const ping = pinger(agent, b, a);
      try {
        await sleep(50);
        const written = Date.now();
        await ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'allow-b' }, spec: { order: 0, selector: 'has(pcn.netA)', ingress: [{ action: 'Allow', source: { selector: 'has(pcn.netB)' } }] } } as never);
        await waitFor('the first answer', async () => ping.answers.length > 0, 10_000);
        converge.push(ping.answers[0]! - written);
      } finally {
        ping.stop();
      }
      await ds.resources.delete('GlobalNetworkPolicy', 'allow-b');
      await pingWorks(agent, b, a, false);
    }

    // Throughput with the guard and without it (the fixed part without its rules, then as it is),
    // alternating; then with the 200 policies and with policy off.
    const iperfServer = spawn('nsenter', [`--net=${agent.container(server.id).path}`, 'iperf3', '-s'], { stdio: 'ignore' });
    const withPolicy: number[] = [];
    const without: number[] = [];
    const guarded: number[] = [];
    const unguarded: number[] = [];
    try {
      await sleep(300);
      // In turns, each going first every other round, so that a drift hits both alike.
      const withGuard = async () => guarded.push(await iperf(agent, server, client));
      const withoutGuard = async () => {
        await applyNftScript('take the guard out', UNGUARDED_PART, { netns: agent.host.path });
        unguarded.push(await iperf(agent, server, client));
        await applyNftScript('restore the guard', FIXED_PART, { netns: agent.host.path });
      };
      for (let r = 0; r < GUARD_ROUNDS; r++) {
        for (const run of r % 2 === 0 ? [withGuard, withoutGuard] : [withoutGuard, withGuard]) await run();
      }
      for (let r = 0; r < THROUGHPUT_ROUNDS; r++) {
        withPolicy.push(await iperf(agent, server, client));
        await daemon.destroy();
        daemon = await start(['--no-policy']);
        without.push(await iperf(agent, server, client));
        await daemon.destroy();
        daemon = await start();
        await pingWorks(agent, b, a, false);
      }
    } finally {
      iperfServer.kill('SIGKILL');
    }
    const sorted = [...converge].sort((x, y) => x - y);
    return {
      converge_ms_p50: round(median(converge), 1),
      converge_ms_p99: round(sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!, 1),
      throughput_gbps_policy: round(median(withPolicy) / 1e9, 2),
      throughput_gbps_none: round(median(without) / 1e9, 2),
      throughput_ratio: round(median(withPolicy.map((w, i) => w / without[i]!)), 3),
      guard_throughput_gbps: round(median(guarded) / 1e9, 2),
      unguarded_throughput_gbps: round(median(unguarded) / 1e9, 2),
      // Each round's pair measured within seconds of each other: the median of their ratios sees
      // through the machine's drift between rounds.
      guard_throughput_ratio: round(median(guarded.map((g, i) => g / unguarded[i]!)), 3),
    };
  } finally {
    await daemon?.destroy();
    await world.destroy();
  }
}

export async function benchPolicy(): Promise<Record<string, number>> {
  // A seed of its own each run (DIFFERENTIAL_SEED repeats one); disagreements are written out whole.
  const seed = Number(process.env.DIFFERENTIAL_SEED ?? Date.now() % 1_000_000);
  const differential = await runDifferential(seed, 100, 100);
  console.error(`differential (seed ${seed}): ${differential.cases} cases, ${differential.delivered} delivered, ${differential.disagreements.length} disagreements`);
  if (differential.disagreements.length > 0) {
    const file = join(tmpdir(), `differential-${seed}.json`);
    writeFileSync(file, differential.disagreements.map(describe).join('\n'));
    console.error(`disagreements written to ${file}`);
  }
  const table = await programming();
  console.error('programming:', JSON.stringify(table));
  const traffic = await endToEnd();
  return { ...traffic, ...table, differential_cases: differential.cases, differential_delivered: differential.delivered, differential_disagreements: differential.disagreements.length };
}
