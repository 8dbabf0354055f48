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
 *   del_over_add, their ratio; del_right_after_add_ms_p50, a DEL sent the moment its ADD answered;
 * - daemon_*_ms: the daemon's own work per ADD and DEL by phase, from its metrics.
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

    const samples = { node: [] as number[], version: [] as number[], ptpAdd: [] as number[], ptpDel: [] as number[], add: [] as number[], del: [] as number[], soloAdd: [] as number[], soloDel: [] as number[], hastyDel: [] as number[] };
    for (let i = 0; i < RUNS + 2; i++) {
      const warm = i < 2;
      const nodeMs = await timed(() => runPlugin(agent.host, process.execPath, { PATH: HOST_PATH }, '', 60_000, ['-e', '0']));
      const versionMs = await timed(() => runPlugin(agent.host, join(world.pluginsDir, 'calico'), { CNI_COMMAND: 'VERSION', PATH: HOST_PATH }, '{"cniVersion":"1.0.0"}'));
      const ours = { plugin: join(world.pluginsDir, 'calico'), conf: viaDaemon };
      const [ptpTimes, ourTimes, soloTimes] = await addsThenDels(agent, world.pluginsDir, [
        { plugin: '/usr/lib/cni/ptp', conf: ptp },
        ours,
        { plugin: join(world.pluginsDir, 'calico'), conf: standalone },
      ]);
      const hastyDelMs = await delRightAfterAdd(agent, world.pluginsDir, ours);
      if (warm) continue;
      samples.hastyDel.push(hastyDelMs);
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
      del_ratio_vs_node: round(median(samples.del) / nodeMs, 3),
      del_over_add: round(median(samples.del) / addMs, 3),
      del_right_after_add_ms_p50: round(median(samples.hastyDel)),
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

/** One CNI command of `plugin` for container `id`, timed; a failure stops the bench. */
async function timedCommand(agent: MesosAgent, pluginsDir: string, contender: Contender, id: string, command: 'ADD' | 'DEL'): Promise<number> {
  const env = { ...agent.env(command, id, 'eth0'), CNI_PATH: `${pluginsDir}:/usr/lib/cni`, PATH: HOST_PATH };
  const start = nowMs();
  const outcome = await runPlugin(agent.host, contender.plugin, env, JSON.stringify(contender.conf));
  const ms = nowMs() - start;
  if (outcome.code !== 0) throw new Error(`${contender.plugin} ${command} failed: ${outcome.stdout} ${outcome.stderr}`);
  return ms;
}

interface Contender {
  readonly plugin: string;
  readonly conf: object;
}

/**
 * One container per contender: every ADD, then every DEL, each timed. A command of ours so
 * follows another plugin's, an ADD as a DEL, as on an agent at rest: a DEL straight after its own
 * ADD lands in the work that ADD leaves the daemon (the new endpoint's policy, programmed 10 ms
 * after its record's event), which a task that lives longer than that never meets (timed apart:
 * delRightAfterAdd).
 */
async function addsThenDels(agent: MesosAgent, pluginsDir: string, contenders: readonly Contender[]): Promise<{ add: number; del: number }[]> {
  const ids = contenders.map(() => randomUUID());
  for (const id of ids) await agent.createContainer(id);
  const adds: number[] = [];
  for (const [i, contender] of contenders.entries()) adds.push(await timedCommand(agent, pluginsDir, contender, ids[i]!, 'ADD'));
  const dels: number[] = [];
  for (const [i, contender] of contenders.entries()) dels.push(await timedCommand(agent, pluginsDir, contender, ids[i]!, 'DEL'));
  for (const id of ids) await agent.destroy(id);
  return adds.map((add, i) => ({ add, del: dels[i]! }));
}

/** A DEL sent the moment its own ADD answered (a task that dies at once), timed. */
async function delRightAfterAdd(agent: MesosAgent, pluginsDir: string, contender: Contender): Promise<number> {
  const id = randomUUID();
  await agent.createContainer(id);
  await timedCommand(agent, pluginsDir, contender, id, 'ADD');
  const ms = await timedCommand(agent, pluginsDir, contender, id, 'DEL');
  await agent.destroy(id);
  return ms;
}
