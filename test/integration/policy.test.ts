import test from 'ava';
import { randomUUID } from 'node:crypto';
import { NFT } from '../../shared/dataplane/nftables';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';

const setup = useCniWorld(test);

interface Task {
  readonly id: string;
  readonly ip: string;
}

async function launch(agent: MesosAgent, network: Record<string, unknown>, labels?: Record<string, string>): Promise<Task> {
  const id = randomUUID();
  const launched = await agent.launch(id, [{ network: network as never, ...(labels ? { labels } : {}) }]);
  if (launched.runs[0]!.code !== 0) throw new Error(launched.runs[0]!.stdout);
  return { id, ip: launched.ips[0]!.ip4!.split('/')[0]! };
}

/** Whether `from` gets an answer from `to`, once the policy in force has settled. */
async function reaches(agent: MesosAgent, from: Task, to: Task): Promise<boolean> {
  return agent.container(from.id).ping(to.ip);
}

/** Waits until the reachability is as expected (policy is programmed a moment after a change). */
async function settlesTo(agent: MesosAgent, from: Task, to: Task, expected: boolean): Promise<boolean> {
  try {
    await waitFor(`${from.ip} ${expected ? 'reaching' : 'not reaching'} ${to.ip}`, async () => (await reaches(agent, from, to)) === expected, 8000);
    return true;
  } catch {
    return false;
  }
}

test.serial('policy - tasks on one network reach each other, tasks of another network do not, both ways; a policy opens exactly what it says; labels forge nothing', async (t) => {
  const { prefix, ds } = await setup.world.scenario('isolation');
  const daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1', '--no-routes', '--metrics-address', '']);
  t.teardown(() => daemon.destroy());
  const netA = setup.world.network('netA', prefix, 'agent1', { daemon_socket: daemon.cniSocket });
  const netB = setup.world.network('netB', prefix, 'agent1', { daemon_socket: daemon.cniSocket });
  const a1 = await launch(setup.agent, netA);
  const a2 = await launch(setup.agent, netA);
  const b1 = await launch(setup.agent, netB);
  // A task of netA that claims netB's membership label: the label is dropped.
  const forger = await launch(setup.agent, netA, { 'pcn.netB': '', 'projectcalico.org/namespace': 'x' });

  t.true(await settlesTo(setup.agent, a1, a2, true), 'same network reaches');
  t.true(await reaches(setup.agent, a2, a1));
  t.false(await reaches(setup.agent, a1, b1), 'netA does not reach netB');
  t.false(await reaches(setup.agent, b1, a1), 'netB does not reach netA');
  t.false(await reaches(setup.agent, forger, b1), 'a forged membership label gains nothing');
  t.true(await reaches(setup.agent, forger, a1), 'the forger is still a member of its own network');
  const forgerRecord = (await ds.resources.list('WorkloadEndpoint')).find((e) => e.spec.containerID === forger.id)!;
  t.false('pcn.netB' in (forgerRecord.metadata.labels ?? {}));
  t.is(forgerRecord.metadata.labels?.['projectcalico.org/namespace'], 'default');

  // ICMP from netB to netA, by a global policy on netA's members: Allow, then profiles for the rest.
  await ds.resources.create({
    kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'icmp-from-b' },
    spec: { order: 10, selector: 'has(pcn.netA)', ingress: [{ action: 'Allow', protocol: 'ICMP', source: { selector: 'has(pcn.netB)' } }, { action: 'Pass' }] },
  });
  t.true(await settlesTo(setup.agent, b1, a1, true), 'the policy lets netB ping netA');
  t.true(await reaches(setup.agent, a2, a1), 'Pass hands the rest to the profile: netA still reaches netA');
  t.false(await reaches(setup.agent, a1, b1), 'nothing opened the other way');
  // A lower order Deny wins over the Allow.
  await ds.resources.create({
    kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'deny-b' },
    spec: { order: 5, selector: 'has(pcn.netA)', ingress: [{ action: 'Deny', source: { selector: 'has(pcn.netB)' } }] },
  });
  t.true(await settlesTo(setup.agent, b1, a1, false), 'the earlier Deny wins');
  t.true(await reaches(setup.agent, a2, a1), 'deny-b decides nothing for netA: the next policy\'s Pass hands it to the profile');
  await ds.resources.delete('GlobalNetworkPolicy', 'icmp-from-b');
  t.true(await settlesTo(setup.agent, a2, a1, false), 'a policy that selects an endpoint and decides nothing, with no Pass after it, denies');
  await ds.resources.delete('GlobalNetworkPolicy', 'deny-b');
  t.true(await settlesTo(setup.agent, a2, a1, true));
  t.true(await settlesTo(setup.agent, b1, a1, false), 'deleting the policy restores isolation');

  // Fail closed: a cali link nobody recorded passes nothing, and the table is ours alone.
  const { stdout } = await setup.agent.host.exec(NFT, ['list', 'tables']);
  t.deepEqual(stdout.trim().split('\n'), ['table inet calico']);

  for (const task of [a1, a2, b1, forger]) for (const r of await setup.agent.destroy(task.id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
  await waitFor('the daemon to drop the endpoints', async () => !(await setup.agent.host.exec(NFT, ['list', 'map', 'inet', 'calico', 'ingress'])).stdout.includes('"cali'), 5000);
});
