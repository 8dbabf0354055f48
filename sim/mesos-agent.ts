/**
 * Calls the CNI executables exactly as the Mesos network/cni isolator does: its environment
 * (CNI_* and PATH only, no CNI_ARGS), stdin with args.org.apache.mesos.network_info injected,
 * the container's netns bind-mounted under a Mesos-like root, networks attached in parallel as
 * eth0, eth1..., only ip4/ip6 read from the result, DEL with the checkpointed config and without
 * CNI_NETNS once the namespace is gone.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { HOST_PATH, runPlugin, type PluginRun } from './cni-exec';
import { Netns } from './netns';

const run = promisify(execFile);

export interface NetworkConfig {
  readonly name: string;
  readonly type: string;
  readonly [key: string]: unknown;
}

export interface Attachment {
  readonly network: NetworkConfig;
  readonly labels?: Readonly<Record<string, string>>;
  /** NetworkInfo groups (Marathon's ipAddress.groups). */
  readonly groups?: readonly string[];
}

interface Container {
  readonly netns: Netns;
  readonly netnsPath: string;
  /** The configs as sent on ADD, kept for DEL as Mesos checkpoints them. */
  readonly checkpoint: { ifname: string; stdin: string; type: string }[];
  /** Its namespace was removed before its DEL. */
  netnsGone?: boolean;
}

export interface LaunchResult {
  readonly runs: PluginRun[];
  /** What Mesos keeps of each result: ip4.ip and ip6.ip. */
  readonly ips: { ip4?: string; ip6?: string }[];
}

/** A plugin to be killed mid-command: the next run of `command`, that long after its start. */
interface ArmedKill {
  readonly command: 'ADD' | 'DEL';
  readonly afterMs: number;
  readonly fired: (killed: boolean) => void;
}

export class MesosAgent {
  private readonly root: string;
  private readonly containers = new Map<string, Container>();
  private armed: ArmedKill | undefined;

  constructor(
    readonly host: Netns,
    readonly pluginsDir: string,
  ) {
    this.root = mkdtempSync(join(tmpdir(), 'mesos-agent-'));
  }

  netnsPath(containerId: string): string {
    return join(this.root, 'isolators/network/cni', containerId, 'ns');
  }

  /** Makes the container's namespace and bind-mounts it where Mesos keeps it. */
  async createContainer(containerId: string): Promise<Netns> {
    const netns = await Netns.create('task');
    const path = this.netnsPath(containerId);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '');
    await run('mount', ['--bind', netns.path, path]);
    this.containers.set(containerId, { netns, netnsPath: path, checkpoint: [] });
    return netns;
  }

  env(command: string, containerId: string, ifname: string, withNetns = true): Record<string, string> {
    return {
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_PATH: this.pluginsDir,
      CNI_IFNAME: ifname,
      ...(withNetns ? { CNI_NETNS: this.netnsPath(containerId) } : {}),
      PATH: HOST_PATH,
    };
  }

  /**
   * The next ADD or DEL (`command`) this agent runs is SIGKILLed `afterMs` after its start, with
   * whatever it started. Resolves once that run ended: true if the kill struck it mid-command,
   * false if it had finished first, or if none ran within `withinMs`.
   */
  killNextPlugin(command: 'ADD' | 'DEL', afterMs: number, withinMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.armed = undefined;
        resolve(false);
      }, withinMs);
      this.armed = { command, afterMs, fired: (killed) => (clearTimeout(timer), resolve(killed)) };
    });
  }

  /** Runs the plugin as the isolator does; the armed kill, if it is for this command, goes with it. */
  private runPlugin(type: string, env: Record<string, string>, stdin: string): Promise<PluginRun> {
    const armed = this.armed?.command === env.CNI_COMMAND ? this.armed : undefined;
    if (armed) this.armed = undefined;
    const running = runPlugin(this.host, join(this.pluginsDir, type), env, stdin, undefined, undefined, armed?.afterMs);
    if (armed) void running.then((run) => armed.fired(run.killed === true));
    return running;
  }

  /** Attaches every network in parallel, as the isolator does. */
  async launch(containerId: string, attachments: readonly Attachment[]): Promise<LaunchResult> {
    if (!this.containers.has(containerId)) await this.createContainer(containerId);
    const container = this.containers.get(containerId)!;
    const runs = await Promise.all(attachments.map(async (attachment, i) => {
      const ifname = `eth${i}`;
      const stdin = JSON.stringify(withNetworkInfo(attachment));
      container.checkpoint.push({ ifname, stdin, type: attachment.network.type });
      return this.runPlugin(attachment.network.type, this.env('ADD', containerId, ifname), stdin);
    }));
    const ips = runs.map((r) => (r.code === 0 ? { ip4: r.json?.ip4?.ip, ip6: r.json?.ip6?.ip } : {}));
    return { runs, ips };
  }

  /** DEL for every network with the checkpointed config; without CNI_NETNS when `netnsGone`. */
  async destroy(containerId: string, options: { netnsGone?: boolean } = {}): Promise<PluginRun[]> {
    const runs = await this.del(containerId, options);
    await this.forget(containerId);
    return runs;
  }

  /**
   * DEL for every network, the container kept (a DEL that failed is sent again, as Mesos does);
   * `netnsGone`: its namespace is removed first, and every DEL after goes without CNI_NETNS too.
   */
  async del(containerId: string, options: { netnsGone?: boolean } = {}): Promise<PluginRun[]> {
    const container = this.containers.get(containerId);
    if (!container) throw new Error(`no container ${containerId}`);
    if (options.netnsGone && !container.netnsGone) {
      await this.removeNetns(container);
      container.netnsGone = true;
    }
    return Promise.all(container.checkpoint.map(({ ifname, stdin, type }) =>
      this.runPlugin(type, this.env('DEL', containerId, ifname, !container.netnsGone), stdin)));
  }

  /** The container is done with: its namespace goes (if still there), and Mesos forgets it. */
  async forget(containerId: string): Promise<void> {
    const container = this.containers.get(containerId);
    if (!container) return;
    if (!container.netnsGone) await this.removeNetns(container);
    this.containers.delete(containerId);
  }

  /** The task vanishes without a DEL (an agent crash): its namespace is gone, its records stay. */
  async vanish(containerId: string): Promise<void> {
    const container = this.containers.get(containerId);
    if (!container) throw new Error(`no container ${containerId}`);
    await this.removeNetns(container);
    this.containers.delete(containerId);
  }

  private async removeNetns(container: Container): Promise<void> {
    await run('umount', [container.netnsPath]).catch(() => undefined);
    rmSync(dirname(container.netnsPath), { recursive: true, force: true });
    await container.netns.destroy();
  }

  container(containerId: string): Netns {
    const container = this.containers.get(containerId);
    if (!container) throw new Error(`no container ${containerId}`);
    return container.netns;
  }

  async cleanup(): Promise<void> {
    for (const container of this.containers.values()) await this.removeNetns(container);
    this.containers.clear();
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The network config as the isolator sends it: args.org.apache.mesos.network_info added. */
function withNetworkInfo({ network, labels, groups }: Attachment): Record<string, unknown> {
  const networkInfo = {
    name: network.name,
    ...(groups?.length ? { groups } : {}),
    ...(labels ? { labels: { labels: Object.entries(labels).map(([key, value]) => ({ key, value })) } } : {}),
  };
  const args = (network.args as Record<string, unknown> | undefined) ?? {};
  return { ...network, args: { ...args, 'org.apache.mesos': { network_info: networkInfo } } };
}
