import test from 'ava';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runPlugin } from '../../sim/cni-exec';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';

let world: CniWorld;

test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  await world?.destroy();
});

test.serial('cni stress - 20 concurrent ADDs on each of 2 agents: unique addresses; all DELs leave nothing', async (t) => {
  const agents = [await world.addAgent(), await world.addAgent()];
  const { prefix, ds } = await world.scenario('stress');
  const launches = await Promise.all(agents.flatMap((agent, a) => Array.from({ length: 20 }, async () => {
    const id = randomUUID();
    const launch = await agent.launch(id, [{ network: world.network('stress-net', prefix, `agent-${a}`, { ipam: { type: 'calico-ipam', assign_ipv6: 'true' } }) }]);
    return { agent, id, launch };
  })));
  const failed = launches.filter((l) => l.launch.runs[0]!.code !== 0);
  t.deepEqual(failed.map((f) => f.launch.runs[0]!.stdout), [], 'every ADD succeeds');
  const v4 = launches.map((l) => l.launch.ips[0]!.ip4);
  const v6 = launches.map((l) => l.launch.ips[0]!.ip6);
  t.is(new Set(v4).size, 40, 'IPv4 addresses unique');
  t.is(new Set(v6).size, 40, 'IPv6 addresses unique');
  t.is((await ds.resources.list('WorkloadEndpoint')).length, 40);
  // A sample of cross-agent-free, same-agent connectivity.
  const [x, y] = launches.filter((l) => l.agent === agents[0]);
  t.true(await x!.agent.container(x!.id).ping(y!.launch.ips[0]!.ip4!.split('/')[0]!));

  const dels = await Promise.all(launches.map((l) => l.agent.destroy(l.id)));
  t.deepEqual(dels.flat().filter((r) => r.code !== 0).map((r) => r.stdout), [], 'every DEL succeeds');
  await assertNothingLeft(t, ds, agents);
});

test.serial('cni stress - the plugin killed (SIGKILL) at points during ADD, then DEL: nothing is left behind', async (t) => {
  const agent = world.agents[0] ?? (await world.addAgent());
  const { prefix, ds } = await world.scenario('sigkill');
  const network = world.network('kill-net', prefix, 'agent-0', { ipam: { type: 'calico-ipam', assign_ipv6: 'true' } });
  const killedAt: string[] = [];
  // From "before it read its input" to "after it finished": each delay stops ADD somewhere else.
  for (const delay of [0, 40, 80, 110, 140, 170, 200, 230, 260, 300, 400]) {
    const id = randomUUID();
    await agent.createContainer(id);
    const child = spawn('nsenter', [`--net=${agent.host.path}`, join(world.pluginsDir, 'calico')], {
      env: agent.env('ADD', id, 'eth0'),
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.stdin.end(JSON.stringify({ ...network, args: { 'org.apache.mesos': { network_info: { name: 'kill-net' } } } }));
    await sleep(delay);
    child.kill('SIGKILL');
    const code = await exited;
    killedAt.push(`${delay}ms:${code === 0 ? 'finished' : 'killed'}`);
    // Mesos then tears the container down with the checkpointed config: DEL.
    const del = await runPlugin(agent.host, join(world.pluginsDir, 'calico'), agent.env('DEL', id, 'eth0'), JSON.stringify(network));
    t.is(del.code, 0, `DEL after a kill at ${delay} ms: ${del.stdout}`);
  }
  t.log(killedAt.join(' '));
  t.true(killedAt.some((k) => k.endsWith('killed')), 'some ADDs were cut short');
  await assertNothingLeft(t, ds, [agent]);
});
