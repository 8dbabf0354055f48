/**
 * A Mesos agent with the net-modules network isolator, as ../shared/docs/netmodules.md (A.1-A.3)
 * describes it: `calico_mesos` run with the agent's environment and the wire JSON the isolator
 * sends (repeated fields only when non-empty, num_ipv6 always, labels as {key, value}), only stdout
 * read; prepare = reserve (static addresses) then allocate, both under one new uid, with no
 * rollback between them (as the isolator); isolate with the executor's pid (a process started in
 * a namespace of the container's own); cleanup = release of the addresses, then, only if that
 * succeeded, cleanup. It never sends ipv6_addrs to isolate, nor release by uid.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { HOST_PATH } from './cni-exec';
import { Netns } from './netns';

export interface NetmodulesCall {
  readonly code: number;
  readonly stdout: string;
  /** The parsed answer, or undefined when stdout was not one JSON object. */
  readonly answer: { error?: unknown; ipv4?: string[]; ipv6?: string[] } | undefined;
}

export interface NetmodulesTask {
  readonly netgroups?: readonly string[];
  readonly staticIps?: readonly string[];
  readonly autoIpv4?: number;
  readonly labels?: Readonly<Record<string, string>>;
}

interface Running {
  readonly netns: Netns;
  readonly executor: ChildProcess;
  readonly ips: string[];
  readonly task: NetmodulesTask;
}

export const CALICO_MESOS = resolve('dist/bin/calico_mesos');

export class NetmodulesAgent {
  private readonly running = new Map<string, Running>();

  constructor(
    readonly host: Netns,
    /** The agent's environment, passed whole to calico_mesos (ETCD_ENDPOINTS, NODENAME...). */
    private readonly env: Readonly<Record<string, string>>,
    /** What the hook reports as the agent's hostname. */
    readonly hostname: string,
  ) {}

  /** Runs calico_mesos once, in the agent's namespace, with a request as the isolator writes it. */
  call(command: string, args: Record<string, unknown>, raw?: string): Promise<NetmodulesCall> {
    const input = raw ?? JSON.stringify({ args: wireArgs(args), command });
    return new Promise((done) => {
      // No node daemon unless the agent's environment names one (CALICO_CNI_SOCKET), and then no
      // policy table unless it says so (CALICO_NO_POLICY), as sim/world.ts's networks.
      const child = execFile('nsenter', [`--net=${this.host.path}`, CALICO_MESOS], { env: { PATH: HOST_PATH, CALICO_CNI_SOCKET: '', CALICO_NO_POLICY: 'true', ...this.env }, timeout: 60_000, maxBuffer: 40 * 1024 }, (err, stdout) => {
        let answer: NetmodulesCall['answer'];
        try {
          const parsed = JSON.parse(stdout) as unknown;
          answer = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as NetmodulesCall['answer']) : undefined;
        } catch {
          answer = undefined;
        }
        done({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, answer });
      });
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    });
  }

  /** prepare and isolate, as the isolator does them; the container's addresses, or the first error. */
  async launch(containerId: string, task: NetmodulesTask): Promise<{ ips: string[]; error?: string }> {
    const uid = randomUUID();
    const common = { hostname: this.hostname, uid, netgroups: task.netgroups ?? [], labels: labelList(task.labels) };
    const ips: string[] = [];
    if (task.staticIps?.length) {
      const reserved = await this.call('reserve', { ...common, ipv4_addrs: task.staticIps });
      if (reserved.answer?.error !== null) return { ips, error: `reserve: ${errorOf(reserved)}` };
      ips.push(...task.staticIps);
    }
    const auto = task.autoIpv4 ?? (task.staticIps?.length ? 0 : 1);
    if (auto > 0) {
      const allocated = await this.call('allocate', { ...common, num_ipv4: auto, num_ipv6: 0 });
      if (allocated.answer?.error !== null) return { ips, error: `allocate: ${errorOf(allocated)}` };
      if (!allocated.answer.ipv4?.length) return { ips, error: 'No IPv4 addresses received from IPAM.' };
      ips.push(...allocated.answer.ipv4);
    }
    // Mesos makes the executor's network namespace; the executor runs in it.
    const netns = await Netns.create('nmtask');
    const executor = spawn('ip', ['netns', 'exec', netns.name, 'sleep', '3600'], { stdio: 'ignore' });
    await new Promise((ready) => executor.once('spawn', ready));
    this.running.set(containerId, { netns, executor, ips, task });
    const isolated = await this.call('isolate', { hostname: this.hostname, container_id: containerId, pid: executor.pid, ipv4_addrs: ips, netgroups: task.netgroups ?? [], labels: labelList(task.labels) });
    if (isolated.answer?.error !== null) return { ips, error: `isolate: ${errorOf(isolated)}` };
    return { ips };
  }

  container(containerId: string): Netns {
    const running = this.running.get(containerId);
    if (!running) throw new Error(`no running container ${containerId}`);
    return running.netns;
  }

  /**
   * cleanup as the isolator does it: release the addresses, then (only if that worked) cleanup.
   * `keepOnFailure`: a container whose release or cleanup failed stays, to be destroyed again.
   */
  async destroy(containerId: string, options: { keepOnFailure?: boolean } = {}): Promise<NetmodulesCall[]> {
    const running = this.running.get(containerId);
    if (!running) return [];
    const calls = [await this.call('release', { ips: running.ips })];
    if (calls[0]!.answer?.error === null) calls.push(await this.call('cleanup', { hostname: this.hostname, container_id: containerId }));
    if (options.keepOnFailure && calls.some((c) => c.answer?.error !== null)) return calls;
    this.running.delete(containerId);
    running.executor.kill('SIGKILL');
    await running.netns.destroy();
    return calls;
  }

  /** The executor and its namespace gone, and the isolator forgot the container (an agent restart): no release, no cleanup. */
  async vanish(containerId: string): Promise<void> {
    const running = this.running.get(containerId);
    if (!running) return;
    this.running.delete(containerId);
    running.executor.kill('SIGKILL');
    await new Promise((gone) => (running.executor.exitCode !== null || running.executor.signalCode !== null ? gone(undefined) : running.executor.once('exit', gone)));
    await running.netns.destroy();
  }

  async cleanupAll(): Promise<void> {
    for (const id of [...this.running.keys()]) await this.destroy(id);
  }
}

/** protobuf's JSON: repeated fields only when they hold something. */
function wireArgs(args: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(args).filter(([, v]) => !(Array.isArray(v) && v.length === 0) && v !== undefined));
}

function labelList(labels: Readonly<Record<string, string>> | undefined): { key: string; value: string }[] {
  return Object.entries(labels ?? {}).map(([key, value]) => ({ key, value }));
}

function errorOf(call: NetmodulesCall): string {
  return call.answer ? String(call.answer.error) : `Got no response (stdout: ${JSON.stringify(call.stdout.slice(0, 200))})`;
}
