/**
 * net-modules against CNI, on a simulated agent of the bench's own with its node daemon:
 * - allocate_isolate_ms_p50: `calico_mesos` allocate then isolate, as the isolator calls them (two
 *   processes, the agent's environment, the daemon's socket), timed together (the executor's start
 *   between them is Mesos' and is not counted); allocate_ms_p50 and isolate_ms_p50 apart;
 * - cni_add_ms_p50: a CNI ADD of our plugin through the same daemon, in runs alternating with them;
 * - ratio_vs_cni: the first over the last;
 * - daemon_*_ms: the daemon's own mean time for allocate, isolate and each phase of isolate.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { HOST_PATH, runPlugin } from '../sim/cni-exec';
import { NodeDaemon } from '../sim/daemon';
import { NetmodulesAgent } from '../sim/netmodules-agent';
import { Netns } from '../sim/netns';
import { CniWorld } from '../sim/world';
import { histogramMeansMs, scrapeMetrics } from './daemon-metrics';
import { median, nowMs, round } from './stats';

const RUNS = 30;
const WARM_UP = 3;
const NODE = 'bench-agent';
const METRICS_PORT = 9098;

export async function benchNetmodules(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  try {
    const agent = await world.addAgent();
    const { prefix } = await world.scenario('bench-nm', { v4: '10.212.0.0/16', v6: 'fd00:212::/64' });
    const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', NODE, '--no-routes', '--gc-interval', '0', '--metrics-address', `127.0.0.1:${METRICS_PORT}`]);
    const mesos = new NetmodulesAgent(agent.host, { ETCD_ENDPOINTS: world.fabric.hostEndpoints, ETCD_PREFIX: prefix, NODENAME: NODE, CALICO_CNI_SOCKET: daemon.cniSocket }, NODE);
    const conf = JSON.stringify(world.network('bench-net', prefix, NODE, { cniVersion: '1.0.0', log_file_path: '', daemon_socket: daemon.cniSocket }));
    const samples = { allocate: [] as number[], isolate: [] as number[], both: [] as number[], cni: [] as number[] };
    for (let i = 0; i < RUNS + WARM_UP; i++) {
      const warm = i < WARM_UP;

      const id = randomUUID();
      await agent.createContainer(id);
      const env = (command: string) => ({ ...agent.env(command, id, 'eth0'), PATH: HOST_PATH });
      let start = nowMs();
      const add = await runPlugin(agent.host, join(world.pluginsDir, 'calico'), env('ADD'), conf);
      const cniMs = nowMs() - start;
      if (add.code !== 0) throw new Error(`CNI ADD failed: ${add.stdout}`);
      await runPlugin(agent.host, join(world.pluginsDir, 'calico'), env('DEL'), conf);
      await agent.destroy(id);

      const uid = randomUUID();
      const containerId = randomUUID();
      start = nowMs();
      const allocated = await mesos.call('allocate', { hostname: NODE, uid, num_ipv4: 1, num_ipv6: 0, netgroups: ['bench'] });
      const allocateMs = nowMs() - start;
      if (allocated.answer?.error !== null) throw new Error(`allocate failed: ${allocated.stdout}`);
      const netns = await Netns.create('nmbench');
      const executor = spawn('ip', ['netns', 'exec', netns.name, 'sleep', '600'], { stdio: 'ignore' });
      await new Promise((ready) => executor.once('spawn', ready));
      start = nowMs();
      const isolated = await mesos.call('isolate', { hostname: NODE, container_id: containerId, pid: executor.pid, ipv4_addrs: allocated.answer.ipv4, netgroups: ['bench'] });
      const isolateMs = nowMs() - start;
      if (isolated.answer?.error !== null) throw new Error(`isolate failed: ${isolated.stdout}`);
      await mesos.call('release', { ips: allocated.answer.ipv4 });
      await mesos.call('cleanup', { hostname: NODE, container_id: containerId });
      executor.kill('SIGKILL');
      await netns.destroy();

      if (warm) continue;
      samples.cni.push(cniMs);
      samples.allocate.push(allocateMs);
      samples.isolate.push(isolateMs);
      samples.both.push(allocateMs + isolateMs);
    }
    const metrics = await scrapeMetrics(agent, METRICS_PORT);
    await daemon.destroy();
    const requests = histogramMeansMs(metrics, 'calico_request_duration_seconds');
    const phases = [...histogramMeansMs(metrics, 'calico_cni_phase_seconds')].flatMap(([labels, ms]) => {
      const phase = /^command="ISOLATE",phase="(\w+)"$/.exec(labels)?.[1];
      return phase ? [[`daemon_isolate_${phase}_ms`, round(ms)] as const] : [];
    });
    const both = median(samples.both);
    const cni = median(samples.cni);
    console.log(`net-modules allocate ${round(median(samples.allocate))} ms + isolate ${round(median(samples.isolate))} ms; CNI ADD ${round(cni)} ms`);
    return {
      allocate_isolate_ms_p50: round(both),
      allocate_ms_p50: round(median(samples.allocate)),
      isolate_ms_p50: round(median(samples.isolate)),
      cni_add_ms_p50: round(cni),
      ratio_vs_cni: round(both / cni, 3),
      daemon_allocate_ms: round(requests.get('driver="cni",call="calico_mesos allocate"') ?? NaN),
      daemon_isolate_ms: round(requests.get('driver="cni",call="calico_mesos isolate"') ?? NaN),
      ...Object.fromEntries(phases),
    };
  } finally {
    await world.destroy();
  }
}
