/**
 * The net-modules test framework's scenarios (../shared/docs/netmodules.md B.2), with everything
 * asserted that the original only printed: every "can ping" answered, every "can't ping" given no
 * answer within 2 s, every IP count and static address checked, and nothing left afterwards. Each
 * runs on every path that can express its tasks.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { readIpamState } from '../test/helpers/ipam-state';
import type { Datacenter, Task, TaskPath, TaskSpec } from './datacenter';

interface Pinger {
  readonly task: TaskSpec;
  /** Indexes of the sleepers it must reach (every address), and must not (any address). */
  readonly can: readonly number[];
  readonly cant?: readonly number[];
}

interface Scenario {
  readonly name: string;
  readonly sleepers: readonly TaskSpec[];
  readonly pingers: readonly Pinger[];
  /** The number of IPv4 addresses each sleeper, then each pinger, must get. */
  readonly ipCounts?: readonly number[];
  /** GlobalNetworkPolicies in force while it runs: name -> spec. */
  readonly policies?: Readonly<Record<string, Record<string, unknown>>>;
}

const task = (slot: number, netgroups: string[], extra: Partial<TaskSpec> = {}): TaskSpec => ({ slot, netgroups, ...extra });

export const SCENARIOS: readonly Scenario[] = [
  { name: 'Same-Host Same-Netgroups Can Ping', sleepers: [task(0, ['netgroup_a'])], pingers: [{ task: task(0, ['netgroup_a']), can: [0] }] },
  { name: "Same-Host Different-Netgroups Can't Ping", sleepers: [task(0, ['netgroup_a'])], pingers: [{ task: task(0, ['netgroup_b']), can: [], cant: [0] }] },
  { name: 'Different-Host Same-Netgroups Can Ping', sleepers: [task(0, ['netgroup_a'])], pingers: [{ task: task(1, ['netgroup_a']), can: [0] }] },
  { name: 'Different-Host Same-Netgroups Can Ping (Default Executor)', sleepers: [task(0, ['netgroup_a'])], pingers: [{ task: task(1, ['netgroup_a']), can: [0] }] },
  { name: 'Multiple Netgroup Task Can Ping Each', sleepers: [task(0, ['netgroup_a']), task(1, ['netgroup_b'])], pingers: [{ task: task(2, ['netgroup_a', 'netgroup_b']), can: [0, 1] }] },
  {
    name: 'Netgroup Mesh',
    sleepers: [task(0, ['netgroup_a']), task(1, ['netgroup_b']), task(2, ['netgroup_a', 'netgroup_b'])],
    pingers: [
      { task: task(0, ['netgroup_a', 'netgroup_b']), can: [0, 1, 2] },
      { task: task(1, ['netgroup_a']), can: [0, 2], cant: [1] },
      { task: task(2, ['netgroup_b']), can: [1, 2], cant: [0] },
    ],
  },
  { name: 'Multiple IPs Can Ping', sleepers: [task(0, ['A'], { autoIpv4: 2 })], pingers: [{ task: task(1, ['A', 'D'], { autoIpv4: 3 }), can: [0] }], ipCounts: [2, 3] },
  { name: 'Static IPs', sleepers: [task(0, ['A'], { staticIps: ['192.168.28.23'], autoIpv4: 2 })], pingers: [{ task: task(1, ['A', 'D'], { staticIps: ['192.168.28.34'], autoIpv4: 1 }), can: [0] }], ipCounts: [3, 2] },
  { name: 'Static IP, one per task', sleepers: [task(0, ['A'], { staticIps: ['192.168.28.23'] })], pingers: [{ task: task(1, ['A'], { staticIps: ['192.168.28.34'] }), can: [0] }], ipCounts: [1, 1] },
  {
    // Ours: policy selects tasks by their labels, whatever path they took (for Docker, the
    // container's org.projectcalico.label.* labels): app=web may reach app=db, and nothing else may.
    name: 'Tasks Selected by Label',
    sleepers: [task(0, ['lbl'], { labels: { app: 'db' } })],
    pingers: [{ task: task(1, ['lbl'], { labels: { app: 'web' } }), can: [0] }, { task: task(1, ['lbl'], { labels: { app: 'cache' } }), can: [], cant: [0] }],
    policies: { 'db-from-web': { selector: "app == 'db'", ingress: [{ action: 'Allow', source: { selector: "app == 'web'" } }] } },
  },
  { name: 'Mix static and assigned IPs', sleepers: [task(0, ['A'], { staticIps: ['192.168.27.23', '192.168.27.34'], autoIpv4: 2 })], pingers: [{ task: task(1, ['A', 'D'], { autoIpv4: 1 }), can: [0] }], ipCounts: [4, 1] },
];

export interface Outcome {
  readonly scenario: string;
  readonly path: string;
  /** PASS, FAIL, or SKIP when the path cannot express the tasks. */
  readonly status: 'PASS' | 'FAIL' | 'SKIP';
  readonly problems: readonly string[];
}

/** Tries a ping a few times: the daemons route and program a new task (and its labels) within moments. */
async function reachesSoon(from: Task, ip: string): Promise<boolean> {
  for (let i = 0; i < 12; i++) {
    if (await from.ping(ip)) return true;
    await sleep(250);
  }
  return false;
}

export async function runScenario(dc: Datacenter, path: TaskPath, scenario: Scenario): Promise<Outcome> {
  const specs = [...scenario.sleepers, ...scenario.pingers.map((p) => p.task)];
  const why = specs.map((s) => path.cannot(s)).find((reason) => reason !== undefined);
  if (why) return { scenario: scenario.name, path: path.name, status: 'SKIP', problems: [why] };
  const problems: string[] = [];
  const policies = Object.entries(scenario.policies ?? {});
  try {
    for (const [name, spec] of policies) await dc.ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec } as never);
    const tasks: Task[] = [];
    for (const spec of specs) {
      const launched = await path.launch(spec);
      if ('error' in launched) throw new Error(`a task did not start: ${launched.error}`);
      tasks.push(launched);
    }
    for (const [i, spec] of specs.entries()) {
      const expected = scenario.ipCounts?.[i] ?? (spec.staticIps?.length ?? 0) + (spec.autoIpv4 ?? (spec.staticIps?.length ? 0 : 1));
      if (tasks[i]!.ips.length !== expected) problems.push(`task ${i} got ${tasks[i]!.ips.length} addresses, expected ${expected}`);
      for (const ip of spec.staticIps ?? []) if (!tasks[i]!.ips.includes(ip)) problems.push(`requested IP ${ip} wasn't assigned to task ${i}`);
    }
    for (const [p, pinger] of scenario.pingers.entries()) {
      const from = tasks[scenario.sleepers.length + p]!;
      for (const target of pinger.can) {
        for (const ip of tasks[target]!.ips) if (!(await reachesSoon(from, ip))) problems.push(`pinger ${p} cannot ping sleeper ${target} at ${ip}`);
      }
      for (const target of pinger.cant ?? []) {
        for (const ip of tasks[target]!.ips) if (await from.ping(ip)) problems.push(`pinger ${p} CAN ping sleeper ${target} at ${ip} (isolation)`);
      }
    }
  } catch (err) {
    problems.push((err as Error).message);
  } finally {
    problems.push(...(await path.destroyAll()).map((f) => `cleanup failed: ${f}`));
    for (const [name] of policies) await dc.ds.resources.delete('GlobalNetworkPolicy', name);
    problems.push(...(await leftovers(dc)));
  }
  return { scenario: scenario.name, path: path.name, status: problems.length === 0 ? 'PASS' : 'FAIL', problems };
}

/** "Same IP twice fails cleanly": the second task asking for a taken address fails, and leaves nothing. */
export async function runSameIpTwice(dc: Datacenter, path: TaskPath): Promise<Outcome> {
  const name = 'Same IP twice fails cleanly';
  const problems: string[] = [];
  try {
    const first = await path.launch(task(0, ['A'], { staticIps: ['192.168.29.5'] }));
    if ('error' in first) problems.push(`the first task did not start: ${first.error}`);
    const second = await path.launch(task(1, ['A'], { staticIps: ['192.168.29.5'] }));
    if (!('error' in second)) problems.push('the second task got the same address');
    else if (!/192\.168\.29\.5/.test(second.error)) problems.push(`the error does not name the address: ${second.error}`);
  } finally {
    await path.destroyAll();
    problems.push(...(await leftovers(dc)));
  }
  return { scenario: name, path: path.name, status: problems.length === 0 ? 'PASS' : 'FAIL', problems };
}

/**
 * "Tasks that Opt-out of Calico can Communicate": tasks on the host's network (no NetworkInfo: no
 * call to any isolator command) talk over the agents' own addresses, policy or not.
 */
export async function runOptOut(dc: Datacenter, path: TaskPath, name: string): Promise<Outcome> {
  const problems: string[] = [];
  const port = String(20000 + Math.floor(Math.random() * 10000));
  // The listener's stdin stays open: at its end busybox nc half-closes the connection, and a sender
  // that sees that before it has read its own input exits successfully having sent nothing.
  const listener = spawn('nsenter', [`--net=${dc.hosts[0]!.path}`, 'busybox', 'nc', '-l', '-p', port], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    let received = '';
    listener.stdout!.on('data', (d: Buffer) => (received += d.toString()));
    // The listener takes a moment to bind: the sender tries again until it connects.
    let connected = false;
    for (let i = 0; i < 25 && !connected; i++) {
      connected = await dc.hosts[1]!.exec('busybox', ['nc', '-w', '2', '10.99.0.11', port], { input: 'hi\n', timeout: 10_000 }).then(() => true, () => false);
      if (!connected) await sleep(200);
    }
    if (!connected) problems.push('the sender could not connect');
    for (let i = 0; i < 50 && !received.includes('hi'); i++) await sleep(100);
    if (connected && !received.includes('hi')) problems.push('the listener received nothing');
  } finally {
    listener.kill('SIGKILL');
  }
  problems.push(...(await leftovers(dc)));
  return { scenario: name, path: path.name, status: problems.length === 0 ? 'PASS' : 'FAIL', problems };
}

/** What a scenario left behind: allocations, endpoint records, veths on the agents. */
async function leftovers(dc: Datacenter): Promise<string[]> {
  const problems: string[] = [];
  const state = await readIpamState(dc.ds);
  if (state.allocated.size > 0) problems.push(`addresses left allocated: ${[...state.allocated.keys()].join(', ')}`);
  const endpoints = await dc.ds.resources.list('WorkloadEndpoint');
  if (endpoints.length > 0) problems.push(`endpoint records left: ${endpoints.map((e) => e.metadata.name).join(', ')}`);
  for (const [i, host] of dc.allHosts.entries()) {
    // The kernel frees a deleted container namespace (and its veth) a moment later: only a veth
    // still there after a few seconds is left behind.
    const caliLinks = async () => (await host.json<{ ifname: string }[]>('link', 'show')).map((l) => l.ifname).filter((n) => n.startsWith('cali'));
    for (let tries = 0; tries < 50 && (await caliLinks()).length > 0; tries++) await sleep(100);
    const links = await caliLinks();
    if (links.length > 0) problems.push(`veths left on agent ${i}: ${links.join(', ')}`);
  }
  return problems;
}

export const OPT_OUT_SCENARIOS = ['Tasks that Opt-out of Calico can Communicate', 'Tasks that Opt-out of Calico can Communicate (Default Executor)'] as const;

/** Every scenario's name, in the order they run on each path. */
export const SCENARIO_NAMES: readonly string[] = [...SCENARIOS.map((s) => s.name), ...OPT_OUT_SCENARIOS, 'Same IP twice fails cleanly'];

/** One scenario, by name, on one path. */
export async function runNamed(dc: Datacenter, path: TaskPath, name: string): Promise<Outcome> {
  const scenario = SCENARIOS.find((s) => s.name === name);
  if (scenario) return runScenario(dc, path, scenario);
  if ((OPT_OUT_SCENARIOS as readonly string[]).includes(name)) return runOptOut(dc, path, name);
  return runSameIpTwice(dc, path);
}

/** Every scenario on every path, in order. */
export async function runFramework(dc: Datacenter, report: (outcome: Outcome) => void = () => undefined): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const path of dc.paths()) {
    for (const name of SCENARIO_NAMES) {
      const outcome = await runNamed(dc, path, name);
      outcomes.push(outcome);
      report(outcome);
    }
  }
  return outcomes;
}
