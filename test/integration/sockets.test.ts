/**
 * The daemon's sockets are bounded: 1,000 misbehaving clients (pipelining without reading,
 * trickling headers, large bodies left unfinished, silent connections) on its CNI and Docker
 * sockets leave its memory bounded, and the plugins' ADDs are still served by it meanwhile.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NodeDaemon } from '../../sim/daemon';
import { CniWorld } from '../../sim/world';

let world: CniWorld;
let daemon: NodeDaemon | undefined;

test.before(async () => {
  world = await CniWorld.create();
  await world.addAgent();
});
test.after.always(async () => {
  await daemon?.destroy();
  await world?.destroy();
});

/** The daemon's resident memory, in MB. */
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

test.serial('sockets - 1,000 misbehaving clients leave the daemon\'s memory bounded, and ADDs are still served by it', async (t) => {
  const agent = world.agents[0]!;
  const { prefix } = await world.scenario('sockets');
  daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'sock-1', '--metrics-address', '']);
  const network = world.network('net', prefix, 'sock-1', { daemon_socket: daemon.cniSocket });
  const add = async () => {
    const id = randomUUID();
    const run = (await agent.launch(id, [{ network }])).runs[0]!;
    t.is(run.code, 0, run.stdout);
    for (const r of await agent.destroy(id)) t.is(r.code, 0, r.stdout);
    return id;
  };
  await add();
  const before = rssMb(daemon.pid);

  const seconds = 20;
  const attack = spawn(process.execPath, [resolve('test/fixtures/misbehave.mjs'), daemon.cniSocket, daemon.ipamSocket, join(daemon.dir, 'plugins', 'calico.sock'), '1000', String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let connections = '';
  attack.stdout!.on('data', (d) => (connections += d));
  const done = new Promise((resolveDone) => attack.on('exit', resolveDone));
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(daemon!.pid))), 200);
  try {
    await new Promise((r) => setTimeout(r, 5000));
    const served: string[] = [];
    for (let i = 0; i < 5; i++) served.push(await add());
    for (const id of served) t.true(daemon.stderr.includes(id), `the daemon served ADD ${id}, not the plugin on its own`);
    await done;
  } finally {
    clearInterval(sampler);
    attack.kill('SIGKILL');
  }
  t.log(`connections made: ${connections.trim()}; daemon RSS ${before.toFixed(0)} MB before, ${peak.toFixed(0)} MB at most under attack`);
  t.true(peak <= 300, `peak RSS ${peak.toFixed(0)} MB`);
});
