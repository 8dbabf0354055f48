/**
 * The daemon's sockets under 1,000 misbehaving clients (test/fixtures/misbehave.mjs: pipelining
 * without reading, trickling headers, large unfinished bodies, silent connections, on the CNI and
 * Docker sockets), on a simulated agent:
 * - add_ms_p50_idle / add_ms_p50_attacked: a CNI ADD through the daemon, without and with them;
 *   add_ratio is their ratio (floor: at most 2);
 * - rss_mb_idle / rss_mb_peak: the daemon's resident memory before, and at most during (floor:
 *   at most 300 MB).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NodeDaemon } from '../sim/daemon';
import { CniWorld } from '../sim/world';
import { median, nowMs, round } from './stats';

const RUNS = 20;
const CLIENTS = 1000;

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

export async function benchSockets(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  try {
    const agent = await world.addAgent();
    const { prefix } = await world.scenario('bench-sockets', { v4: '10.212.0.0/16', v6: 'fd00:212::/64' });
    const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'bench-sockets', '--metrics-address', '']);
    const network = world.network('net', prefix, 'bench-sockets', { daemon_socket: daemon.cniSocket, log_file_path: '' });
    const adds = async (runs: number) => {
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const id = randomUUID();
        await agent.createContainer(id);
        const started = nowMs();
        const run = (await agent.launch(id, [{ network }])).runs[0]!;
        times.push(nowMs() - started);
        if (run.code !== 0 || !daemon.stderr.includes(id)) throw new Error(`an ADD was not served by the daemon: ${run.stdout}`);
        await agent.destroy(id);
      }
      return times;
    };
    await adds(3);
    const idle = median(await adds(RUNS));
    const rssIdle = rssMb(daemon.pid);

    const seconds = 40;
    const attack = spawn(process.execPath, [resolve('test/fixtures/misbehave.mjs'), daemon.cniSocket, daemon.ipamSocket, join(daemon.dir, 'plugins', 'calico.sock'), String(CLIENTS), String(seconds)], { stdio: 'ignore' });
    let peak = rssIdle;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(daemon.pid))), 100);
    let attacked: number;
    try {
      await new Promise((r) => setTimeout(r, 5000));
      attacked = median(await adds(RUNS));
      await new Promise((r) => attack.on('exit', r));
    } finally {
      clearInterval(sampler);
      attack.kill('SIGKILL');
    }
    await daemon.destroy();
    console.log(`ADD through the daemon: ${round(idle)} ms idle, ${round(attacked)} ms with ${CLIENTS} misbehaving clients; RSS ${round(rssIdle, 0)} MB idle, ${round(peak, 0)} MB at most`);
    return { add_ms_p50_idle: round(idle), add_ms_p50_attacked: round(attacked), add_ratio: round(attacked / idle, 3), rss_mb_idle: round(rssIdle, 1), rss_mb_peak: round(peak, 1) };
  } finally {
    await world.destroy();
  }
}
