/**
 * CNI ADD and DEL timings on a simulated agent of the bench's own (a fabric with etcd, a host
 * namespace, one container namespace per run), in one run:
 * - node_ms_p50: `node -e 0`, the floor of any node executable, started exactly as the plugin is
 *   (inside the host namespace, with only PATH in its environment: a runtime passes only CNI_*
 *   and PATH, and variables such as NODE_EXTRA_CA_CERTS change node's start-up time);
 * - version_ms_p50: `CNI_COMMAND=VERSION` of our plugin, its start-up alone;
 * - ptp_add_ms_p50: Debian's Go `ptp` plugin with `host-local` IPAM, the reference plugins;
 * - add_ms_p50 / del_ms_p50: our `calico` plugin with `calico-ipam`, in the configuration the
 *   README recommends (the node daemon running on the agent), and add_ms_p50_standalone without it;
 * - daemon_*_ms: the daemon's own work per ADD by phase, from its metrics.
 * Runs alternate between the contenders so that drift hits all alike.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_PATH, runPlugin } from '../sim/cni-exec';
import { CniWorld } from '../sim/world';
import { NodeDaemon } from '../sim/daemon';
import type { MesosAgent } from '../sim/mesos-agent';
import { histogramMeansMs, scrapeMetrics } from './daemon-metrics';
import { median, nowMs, round } from './stats';

/** Rounds measured (BENCH_ROUNDS for a quick look). */
const RUNS = Number(process.env.BENCH_ROUNDS) || 40;
const METRICS_PORT = 9199;

export async function benchCni(): Promise<Record<string, number>> {
  if (!existsSync('/usr/lib/cni/ptp')) throw new Error('Debian\'s containernetworking-plugins is missing: run scripts/install-deps.sh');
  const world = await CniWorld.create();
  let daemon: NodeDaemon | undefined;
  try {
    const agent = await world.addAgent();
    const { prefix } = await world.scenario('bench', { v4: '10.210.0.0/16', v6: 'fd00:210::/64' });
    daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'bench-agent', '--no-routes', '--gc-interval', '0', '--metrics-address', `127.0.0.1:${METRICS_PORT}`]);
    const viaDaemon = world.network('bench-net', prefix, 'bench-agent', { cniVersion: '1.0.0', log_file_path: '', daemon_socket: daemon.cniSocket });
    // Another host's name: its blocks are its own, as a plugin on another agent would have.
    const standalone = { ...viaDaemon, daemon_socket: '', nodename: 'bench-agent-solo' };
    const hostLocalDir = `/tmp/bench-host-local-${randomUUID()}`;
    const ptp = { cniVersion: '1.0.0', name: 'ptp-net', type: 'ptp', ipam: { type: 'host-local', subnet: '10.211.0.0/16', dataDir: hostLocalDir } };

    const samples = { node: [] as number[], version: [] as number[], ptpAdd: [] as number[], ptpDel: [] as number[], add: [] as number[], del: [] as number[], soloAdd: [] as number[], soloDel: [] as number[] };
    for (let i = 0; i < RUNS + 2; i++) {
      const warm = i < 2;
      const nodeMs = await timed(() => runPlugin(agent.host, process.execPath, { PATH: HOST_PATH }, '', 60_000, ['-e', '0']));
      const versionMs = await timed(() => runPlugin(agent.host, join(world.pluginsDir, 'calico'), { CNI_COMMAND: 'VERSION', PATH: HOST_PATH }, '{"cniVersion":"1.0.0"}'));
      const ptpTimes = await addDel(agent, '/usr/lib/cni/ptp', ptp, world.pluginsDir);
      const ourTimes = await addDel(agent, join(world.pluginsDir, 'calico'), viaDaemon, world.pluginsDir);
      const soloTimes = await addDel(agent, join(world.pluginsDir, 'calico'), standalone, world.pluginsDir);
      if (warm) continue;
      samples.soloAdd.push(soloTimes.add);
      samples.soloDel.push(soloTimes.del);
      samples.node.push(nodeMs);
      samples.version.push(versionMs);
      samples.ptpAdd.push(ptpTimes.add);
      samples.ptpDel.push(ptpTimes.del);
      samples.add.push(ourTimes.add);
      samples.del.push(ourTimes.del);
    }
    rmSync(hostLocalDir, { recursive: true, force: true });
    const phases = await addPhases(agent);
    await daemon.destroy();
    const nodeMs = median(samples.node);
    const addMs = median(samples.add);
    const ptpMs = median(samples.ptpAdd);
    console.log(`node -e 0: ${round(nodeMs)} ms; ptp+host-local ADD ${round(ptpMs)} ms, DEL ${round(median(samples.ptpDel))} ms`);
    console.log(`calico with the node daemon: ADD ${round(addMs)} ms, DEL ${round(median(samples.del))} ms; standalone: ADD ${round(median(samples.soloAdd))} ms, DEL ${round(median(samples.soloDel))} ms`);
    return {
      add_ms_p50: round(addMs),
      del_ms_p50: round(median(samples.del)),
      ptp_add_ms_p50: round(ptpMs),
      ptp_del_ms_p50: round(median(samples.ptpDel)),
      node_ms_p50: round(nodeMs),
      version_ms_p50: round(median(samples.version)),
      ratio_vs_node: round(addMs / nodeMs, 3),
      ratio_vs_ptp: round(addMs / ptpMs, 3),
      add_ms_p50_standalone: round(median(samples.soloAdd)),
      del_ms_p50_standalone: round(median(samples.soloDel)),
      ratio_vs_node_standalone: round(median(samples.soloAdd) / nodeMs, 3),
      ...Object.fromEntries(Object.entries(phases).map(([phase, ms]) => [`daemon_${phase}_ms`, round(ms)])),
    };
  } catch (err) {
    throw new Error(`${(err as Error).message}\nthe daemon's log ends:\n${daemon?.stderr.slice(-3000)}`);
  } finally {
    await daemon?.destroy();
    await world.destroy();
  }
}

/** The daemon's mean time per ADD and DEL phase, read from its metrics inside the agent's namespace. */
async function addPhases(agent: MesosAgent): Promise<Record<string, number>> {
  const text = await scrapeMetrics(agent, METRICS_PORT);
  const out: Record<string, number> = {};
  for (const [labels, ms] of histogramMeansMs(text, 'calico_cni_phase_seconds')) {
    const [, command, phase] = /^command="(ADD|DEL)",phase="(\w+)"$/.exec(labels) ?? [];
    if (command) out[command === 'ADD' ? phase! : `del_${phase}`] = ms;
  }
  // The whole request as the daemon served it, from reading it to answering.
  const requests = histogramMeansMs(text, 'calico_request_duration_seconds');
  out.request = requests.get('driver="cni",call="calico ADD"') ?? NaN;
  out.del_request = requests.get('driver="cni",call="calico DEL"') ?? NaN;
  return out;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = nowMs();
  await fn();
  return nowMs() - start;
}

/** One container: ADD then DEL through `plugin`, each timed; a failure stops the bench. */
async function addDel(agent: MesosAgent, plugin: string, conf: object, pluginsDir: string): Promise<{ add: number; del: number }> {
  const id = randomUUID();
  await agent.createContainer(id);
  const env = (command: string) => ({ ...agent.env(command, id, 'eth0'), CNI_PATH: `${pluginsDir}:/usr/lib/cni`, PATH: HOST_PATH });
  const stdin = JSON.stringify(conf);
  let start = nowMs();
  const add = await runPlugin(agent.host, plugin, env('ADD'), stdin);
  const addMs = nowMs() - start;
  if (add.code !== 0) throw new Error(`${plugin} ADD failed: ${add.stdout} ${add.stderr}`);
  start = nowMs();
  const del = await runPlugin(agent.host, plugin, env('DEL'), stdin);
  const delMs = nowMs() - start;
  if (del.code !== 0) throw new Error(`${plugin} DEL failed: ${del.stdout} ${del.stderr}`);
  await agent.destroy(id);
  return { add: addMs, del: delMs };
}
