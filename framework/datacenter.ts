/**
 * The framework's datacenter: a fabric with etcd and three agents, each with its node daemon
 * (routes between the agents, policy, GC), and the paths a task can take onto Calico on them:
 * the net-modules isolator (calico_mesos) and the Mesos CNI isolator (our CNI plugin); and three
 * Docker agents for the Docker path (docker-path.ts). A task is described once; each path
 * expresses what it can of it.
 */
import { randomUUID } from 'node:crypto';
import type { Datastore } from '../shared/datastore';
import { NodeDaemon } from '../sim/daemon';
import { MesosAgent } from '../sim/mesos-agent';
import { NetmodulesAgent } from '../sim/netmodules-agent';
import type { Netns } from '../sim/netns';
import { CniWorld } from '../sim/world';
import { DockerPath } from './docker-path';

export const AGENTS = 3;
/** The pool the scenarios' static addresses (192.168.27.x, 192.168.28.x) come from. */
export const POOL = '192.168.0.0/16';
/** The CNI network every CNI task joins: its profile admits nobody, so only groups make peers. */
export const CNI_NETWORK = 'framework';

export interface TaskSpec {
  /** Which agent: tasks with the same slot share one, different slots are on different agents. */
  readonly slot: number;
  readonly netgroups: readonly string[];
  readonly autoIpv4?: number;
  readonly staticIps?: readonly string[];
  /** The task's labels (Mesos labels; a Docker container's org.projectcalico.label.* labels). */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface Task {
  readonly ips: readonly string[];
  /** Whether a ping from this task to `ip` is answered within 2 s. */
  ping(ip: string): Promise<boolean>;
}

export interface TaskPath {
  readonly name: 'net-modules' | 'mesos-cni' | 'docker';
  /** Why this path cannot express the task, or undefined when it can. */
  cannot(task: TaskSpec): string | undefined;
  /** The task started, or the error the path reported. */
  launch(task: TaskSpec): Promise<Task | { error: string }>;
  /** Every task it started, stopped as the agent stops them; the calls' failures. */
  destroyAll(): Promise<string[]>;
}

export class Datacenter {
  private constructor(
    readonly world: CniWorld,
    readonly prefix: string,
    readonly ds: Datastore,
    /** The Mesos agents (net-modules and CNI paths). */
    readonly hosts: readonly Netns[],
    private readonly daemons: readonly NodeDaemon[],
    private readonly docker: DockerPath,
  ) {}

  /** Every agent's host, the Docker agents' too. */
  get allHosts(): readonly Netns[] {
    return [...this.hosts, ...this.docker.hosts];
  }

  static async create(): Promise<Datacenter> {
    const world = await CniWorld.create();
    const { prefix, ds } = await world.scenario('framework', { v4: POOL, v6: 'fd00:192::/64' });
    // The operator's profile for the CNI network: no one is let in for being on it.
    await ds.resources.create({ kind: 'Profile', apiVersion: 'projectcalico.org/v3', metadata: { name: CNI_NETWORK }, spec: { egress: [{ action: 'Allow', source: {}, destination: {} }] } });
    const hosts: Netns[] = [];
    const daemons: NodeDaemon[] = [];
    for (let i = 0; i < AGENTS; i++) {
      const agent = await world.addAgent();
      hosts.push(agent.host);
      daemons.push(await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', nodeName(i), '--metrics-address', '']));
    }
    return new Datacenter(world, prefix, ds, hosts, daemons, await DockerPath.create(world, prefix));
  }

  paths(): TaskPath[] {
    return [this.netmodulesPath(), this.cniPath(), this.docker];
  }

  private netmodulesPath(): TaskPath {
    const agents = this.hosts.map((host, i) => new NetmodulesAgent(host, { ETCD_ENDPOINTS: this.world.fabric.hostEndpoints, ETCD_PREFIX: this.prefix, NODENAME: nodeName(i), CALICO_CNI_SOCKET: this.daemons[i]!.cniSocket }, `10.99.0.${11 + i}`));
    const started: { agent: NetmodulesAgent; id: string }[] = [];
    return {
      name: 'net-modules',
      cannot: () => undefined,
      launch: async (task) => {
        const agent = agents[task.slot % AGENTS]!;
        const id = randomUUID();
        const outcome = await agent.launch(id, { netgroups: task.netgroups, staticIps: task.staticIps ?? [], autoIpv4: task.autoIpv4 ?? (task.staticIps?.length ? 0 : 1), labels: task.labels });
        started.push({ agent, id });
        if (outcome.error) return { error: outcome.error };
        const netns = agent.container(id);
        return { ips: outcome.ips, ping: (ip) => netns.ping(ip) };
      },
      destroyAll: async () => {
        const failures: string[] = [];
        for (const { agent, id } of started.splice(0)) {
          for (const call of await agent.destroy(id)) if (call.answer?.error !== null) failures.push(`${id}: ${call.stdout}`);
        }
        return failures;
      },
    };
  }

  private cniPath(): TaskPath {
    const agents = this.hosts.map((host) => new MesosAgent(host, this.world.pluginsDir));
    const started: { agent: MesosAgent; id: string }[] = [];
    return {
      name: 'mesos-cni',
      // One CNI attachment has one IPv4 address: asked for (a label), or chosen, not both.
      cannot: (task) => {
        const statics = task.staticIps?.length ?? 0;
        const auto = task.autoIpv4 ?? (statics ? 0 : 1);
        if (statics + auto !== 1) return 'a CNI attachment has exactly one IPv4 address';
        return undefined;
      },
      launch: async (task) => {
        const agent = agents[task.slot % AGENTS]!;
        const id = randomUUID();
        const network = this.world.network(CNI_NETWORK, this.prefix, nodeName(task.slot % AGENTS), { daemon_socket: this.daemons[task.slot % AGENTS]!.cniSocket });
        const labels = { ...task.labels, ...(task.staticIps?.length ? { ipv4_addrs: JSON.stringify(task.staticIps) } : {}) };
        const launched = await agent.launch(id, [{ network, groups: task.netgroups, ...(Object.keys(labels).length > 0 ? { labels } : {}) }]);
        started.push({ agent, id });
        const run = launched.runs[0]!;
        if (run.code !== 0) return { error: run.stdout };
        const netns = agent.container(id);
        return { ips: [launched.ips[0]!.ip4!.split('/')[0]!], ping: (ip) => netns.ping(ip) };
      },
      destroyAll: async () => {
        const failures: string[] = [];
        for (const { agent, id } of started.splice(0)) {
          for (const run of await agent.destroy(id)) if (run.code !== 0) failures.push(`${id}: ${run.stdout}`);
        }
        return failures;
      },
    };
  }

  async destroy(): Promise<void> {
    await this.docker.destroy();
    for (const daemon of this.daemons) await daemon.destroy();
    await this.world.destroy();
  }
}

export function nodeName(index: number): string {
  return `framework-agent-${index}`;
}
