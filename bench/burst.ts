/**
 * Bursts, on simulated agents of the bench's own, each with its node daemon (warmed up by a few
 * sequential ADDs and DELs first, as a daemon that has run for a while is):
 * - burst_100_s: 100 concurrent CNI ADDs on one agent (the plugins forwarding to the daemon), wall
 *   time, the median of 5 rounds; burst_ratio: that over 100 concurrent `node -e 0` started exactly
 *   as the plugins are (in the agent's namespace, only PATH in the environment), the floor of 100
 *   node processes, in rounds alternating with the bursts; event_loop_max_ms: the longest the
 *   daemon's event loop was held up during a burst (node's own measure, from its metrics);
 * - blocks_claimed_100: blocks the agent holds after that burst (it held none before);
 * - hosts4x25_allocs_per_s: 4 agents' daemons each asked for 25 addresses at once through
 *   Docker's IpamDriver socket, allocations per second over the whole; cas_per_s: sequential
 *   compare-and-swap transactions on the same etcd from one client, the rate one writer can
 *   reach; hosts4x25_ratio: the first over the second.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { HOST_PATH, runPlugin } from '../sim/cni-exec';
import { NodeDaemon } from '../sim/daemon';
import { callDriver } from '../sim/driver-client';
import { CniWorld } from '../sim/world';
import { metricValue, scrapeMetrics } from './daemon-metrics';
import { median, nowMs, round } from './stats';

const BURST = 100;
const HOSTS = 4;
const PER_HOST = 25;
const CAS_ROUNDS = 500;
const WARM_UP = 20;
/** Rounds measured (BENCH_ROUNDS for a quick look). */
const ROUNDS = Number(process.env.BENCH_ROUNDS) || 5;
const METRICS_PORT = 9198;

export async function benchBurst(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  const daemons: NodeDaemon[] = [];
  try {
    const agents = [];
    for (let i = 0; i < HOSTS; i++) agents.push(await world.addAgent());
    const { prefix, ds } = await world.scenario('burst', { v4: '10.210.0.0/16', v6: 'fd00:210::/64' });
    const nodes = agents.map((_, i) => `burst-agent-${i}`);
    for (const [i, agent] of agents.entries()) {
      const metricsAddress = i === 0 ? `127.0.0.1:${METRICS_PORT}` : '';
      daemons.push(await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', nodes[i]!, '--no-routes', '--gc-interval', '0', '--metrics-address', metricsAddress]));
    }
    const agent = agents[0]!;
    const conf = JSON.stringify(world.network('burst-net', prefix, nodes[0]!, { cniVersion: '1.0.0', log_file_path: '', daemon_socket: daemons[0]!.cniSocket }));
    const ids = Array.from({ length: BURST }, () => randomUUID());
    for (const id of ids) await agent.createContainer(id);
    const env = (command: string, id: string) => ({ ...agent.env(command, id, 'eth0'), PATH: HOST_PATH });
    // A daemon on a real agent has run for a while: its code is compiled. So is this one's, first.
    for (const id of ids.slice(0, WARM_UP)) {
      for (const command of ['ADD', 'DEL']) await runPlugin(agent.host, join(world.pluginsDir, 'calico'), env(command, id), conf);
    }

    // Rounds alternate the floor (as many node processes, started the same way, at once) and the
    // burst, so that the machine's drift hits both alike; the medians are the figures.
    const nodeRuns: number[] = [];
    const burstRuns: number[] = [];
    const loopDelays: number[] = [];
    let blocks = 0;
    for (let r = 0; r < ROUNDS; r++) {
      let start = nowMs();
      await Promise.all(ids.map(() => runPlugin(agent.host, process.execPath, { PATH: HOST_PATH }, '', 120_000, ['-e', '0'])));
      nodeRuns.push((nowMs() - start) / 1000);

      // A scrape resets the event loop's longest delay: the next one covers the burst alone.
      await scrapeMetrics(agent, METRICS_PORT);
      start = nowMs();
      const adds = await Promise.all(ids.map((id) => runPlugin(agent.host, join(world.pluginsDir, 'calico'), env('ADD', id), conf, 120_000)));
      burstRuns.push((nowMs() - start) / 1000);
      loopDelays.push(metricValue(await scrapeMetrics(agent, METRICS_PORT), 'nodejs_eventloop_lag_max_seconds')! * 1000);
      const failed = adds.filter((r) => r.code !== 0);
      if (failed.length > 0) throw new Error(`${failed.length} ADDs failed: ${failed[0]!.stdout}`);
      const addresses = adds.map((r) => String(r.json!.ips[0].address));
      if (new Set(addresses).size !== BURST) throw new Error('an address was handed out twice');
      // The host held none before the first burst.
      if (r === 0) blocks = (await ds.kv.list(ds.keys.hostAffinityPrefix(nodes[0]!, 4), { keysOnly: true })).length;
      const dels = await Promise.all(ids.map((id) => runPlugin(agent.host, join(world.pluginsDir, 'calico'), env('DEL', id), conf, 120_000)));
      if (dels.some((r) => r.code !== 0)) throw new Error('a DEL failed');
    }
    const nodeS = median(nodeRuns);
    const burstS = median(burstRuns);
    console.log(`${BURST} concurrent ADDs: ${burstRuns.map((x) => round(x)).join(', ')} s (${BURST} node -e 0: ${nodeRuns.map((x) => round(x)).join(', ')} s); blocks claimed: ${blocks}`);

    // Four daemons, 25 requests each, all at once.
    let start = nowMs();
    const answers = await Promise.all(daemons.flatMap((daemon) =>
      Array.from({ length: PER_HOST }, () => callDriver(daemon.ipamSocket, '/IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4' }))));
    const spreadS = (nowMs() - start) / 1000;
    if (answers.some((a) => a.status !== 200)) throw new Error(`a RequestAddress failed: ${JSON.stringify(answers.find((a) => a.status !== 200)!.json)}`);
    const allocsPerS = (HOSTS * PER_HOST) / spreadS;

    // One writer's sequential compare-and-swap rate on the same etcd.
    const key = `${prefix}/bench-cas`;
    let revision = ((await ds.kv.txn([{ key, put: '0' }])) as { revision: string }).revision;
    start = nowMs();
    for (let i = 0; i < CAS_ROUNDS; i++) {
      const outcome = await ds.kv.txn([{ key, put: String(i), expect: { modRevision: revision } }]);
      if (!outcome.ok) throw new Error('benchmark CAS lost a race it cannot have');
      revision = outcome.revision;
    }
    const casPerS = CAS_ROUNDS / ((nowMs() - start) / 1000);
    console.log(`4 daemons x 25 requests: ${round(allocsPerS, 0)} allocations/s; sequential CAS: ${round(casPerS, 0)}/s`);
    return {
      burst_100_s: round(burstS, 3),
      node_100_s: round(nodeS, 3),
      burst_ratio: round(burstS / nodeS, 3),
      event_loop_max_ms: round(Math.max(...loopDelays), 1),
      blocks_claimed_100: blocks,
      hosts4x25_allocs_per_s: round(allocsPerS, 1),
      cas_per_s: round(casPerS, 1),
      hosts4x25_ratio: round(allocsPerS / casPerS, 3),
    };
  } finally {
    for (const daemon of daemons) await daemon.destroy();
    await world.destroy();
  }
}
