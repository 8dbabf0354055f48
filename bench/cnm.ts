/**
 * `docker run --rm local/busybox true` on a calico network against the same on a network of
 * Docker's own `bridge` driver: same dockerd (in a simulated agent of the bench's own), same run,
 * alternating, so that drift hits both alike.
 */
import { CniWorld } from '../sim/world';
import { DockerAgent } from '../sim/docker-agent';
import { median, nowMs, round } from './stats';

const RUNS = 15;

export async function benchCnm(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  let agent: DockerAgent | undefined;
  try {
    agent = await DockerAgent.start(await world.fabric.addHost('bench'));
    const { prefix } = await world.scenario('cnm-bench', { v4: '10.240.0.0/16', v6: 'fd00:240::/64' });
    const driver = `calico-bench-${Math.random().toString(36).slice(2, 6)}`;
    await agent.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix, node: 'bench-agent', driver, ipamDriver: `${driver}-ipam`, extraArgs: ['--scope', 'local', '--log-level', 'warning'] });
    await agent.docker('network', 'create', '-d', driver, '--ipam-driver', `${driver}-ipam`, 'calico-net');
    await agent.docker('network', 'create', '-d', 'bridge', '--subnet', '10.241.0.0/16', 'bridge-net');
    const samples = { calico: [] as number[], bridge: [] as number[] };
    for (let i = 0; i < RUNS + 2; i++) {
      for (const network of ['calico-net', 'bridge-net'] as const) {
        const start = nowMs();
        await agent.docker('run', '--rm', '--net', network, 'local/busybox', 'true');
        if (i >= 2) samples[network === 'calico-net' ? 'calico' : 'bridge'].push((nowMs() - start) / 1000);
      }
    }
    const calico = median(samples.calico);
    const bridge = median(samples.bridge);
    console.log(`docker run --rm true: calico ${round(calico, 3)} s, bridge ${round(bridge, 3)} s (medians of ${RUNS})`);
    await agent.docker('network', 'rm', 'calico-net', 'bridge-net');
    return { calico_s_p50: round(calico, 4), bridge_s_p50: round(bridge, 4), ratio: round(calico / bridge, 3) };
  } finally {
    await agent?.destroy();
    await world.destroy();
  }
}
