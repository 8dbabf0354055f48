/**
 * The framework's Docker path: three agents of their own, each with dockerd and the node daemon
 * (local scope), on the framework's fabric and datastore. A netgroup is a Docker network of that
 * name (created on an agent when a task there first needs it); a task is a busybox container on
 * it, its static address asked for with `--ip`, its labels as `org.projectcalico.label.*` labels.
 *
 * A Docker container joins several networks by one endpoint each, with an address on each and
 * each endpoint only in its own network's profile: the several-netgroup and several-address tasks
 * of the scenarios have no Docker equivalent, and are skipped saying so.
 */
import { DOCKER_LABEL_PREFIX } from '../cnm/container-labels';
import { DockerAgent } from '../sim/docker-agent';
import { POOL, type Task, type TaskPath, type TaskSpec } from './datacenter';
import type { CniWorld } from '../sim/world';

export const DOCKER_AGENTS = 3;

export class DockerPath implements TaskPath {
  readonly name = 'docker' as const;
  private readonly networks = new Set<string>();
  private readonly started: { agent: DockerAgent; name: string }[] = [];
  private counter = 0;

  private constructor(
    private readonly agents: readonly DockerAgent[],
    private readonly driver: string,
  ) {}

  static async create(world: CniWorld, prefix: string): Promise<DockerPath> {
    const driver = `calico-${Math.random().toString(36).slice(2, 7)}`;
    const agents: DockerAgent[] = [];
    for (let i = 0; i < DOCKER_AGENTS; i++) {
      const agent = await DockerAgent.start(await world.fabric.addHost('fwdock'));
      agents.push(agent);
      await agent.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix, node: `framework-docker-${i}`, driver, ipamDriver: `${driver}-ipam`, extraArgs: ['--scope', 'local', '--metrics-address', ''] });
    }
    return new DockerPath(agents, driver);
  }

  cannot(task: TaskSpec): string | undefined {
    if (task.netgroups.length !== 1) return 'a Docker container is on one network per endpoint, each endpoint in its own network\'s profile: a task of several netgroups has no equivalent';
    const statics = task.staticIps?.length ?? 0;
    if (statics + (task.autoIpv4 ?? (statics ? 0 : 1)) !== 1) return 'a Docker endpoint has exactly one IPv4 address';
    return undefined;
  }

  async launch(task: TaskSpec): Promise<Task | { error: string }> {
    const agent = this.agents[task.slot % DOCKER_AGENTS]!;
    const network = task.netgroups[0]!;
    const key = `${task.slot % DOCKER_AGENTS}/${network}`;
    if (!this.networks.has(key)) {
      // --subnet: `docker run --ip` needs it, and it names the Calico pool.
      await agent.docker('network', 'create', '-d', this.driver, '--ipam-driver', `${this.driver}-ipam`, '--subnet', POOL, network);
      this.networks.add(key);
    }
    const name = `task-${++this.counter}`;
    try {
      const labels = Object.entries(task.labels ?? {}).flatMap(([key, value]) => ['--label', `${DOCKER_LABEL_PREFIX}${key}=${value}`]);
      await agent.docker('run', '-d', '--name', name, '--net', network, ...(task.staticIps?.length ? ['--ip', task.staticIps[0]!] : []), ...labels, 'local/busybox', 'sleep', '600');
    } catch (err) {
      this.started.push({ agent, name });
      return { error: (err as { stderr?: string }).stderr || (err as Error).message };
    }
    this.started.push({ agent, name });
    const ip = (await agent.docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name)).stdout.trim();
    return {
      ips: [ip],
      ping: (to) => agent.docker('exec', name, 'ping', '-c', '1', '-W', '2', to).then(() => true, () => false),
    };
  }

  async destroyAll(): Promise<string[]> {
    const failures: string[] = [];
    for (const { agent, name } of this.started.splice(0)) {
      await agent.docker('rm', '-f', name).catch((err: Error) => failures.push(`${name}: ${err.message}`));
    }
    return failures;
  }

  /** The agents' hosts: where the scenarios look for veths left behind. */
  get hosts() {
    return this.agents.map((a) => a.host);
  }

  async destroy(): Promise<void> {
    for (const agent of this.agents) await agent.destroy();
  }
}
