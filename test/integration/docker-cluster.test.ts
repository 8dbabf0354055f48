import test from 'ava';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';
import { DockerAgent } from '../../sim/docker-agent';
import { FABRIC_ADDRESS } from '../../sim/fabric';

let world: CniWorld;
const agents: DockerAgent[] = [];

test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  for (const agent of agents) await agent.destroy();
  await world?.destroy();
});

test.serial('docker cluster - two dockerd agents sharing etcd as cluster store: a global network made on one is usable on the other', async (t) => {
  const { prefix, ds } = await world.scenario('cluster', { v4: '10.230.0.0/16', v6: 'fd00:230::/64' });
  const driver = `calico-${Math.random().toString(36).slice(2, 7)}`;
  for (const n of [1, 2]) {
    const agent = await DockerAgent.start(await world.fabric.addHost('dock'), { clusterStore: `etcd://${FABRIC_ADDRESS}:2379` });
    agents.push(agent);
    // The default scope, global: Docker keeps the network in the cluster store.
    await agent.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix, node: `agent-${n}`, driver, ipamDriver: `${driver}-ipam` });
  }
  const [one, two] = agents as [DockerAgent, DockerAgent];
  await one.docker('network', 'create', '-d', driver, '--ipam-driver', `${driver}-ipam`, 'global-net');
  t.regex((await two.docker('network', 'inspect', '-f', '{{.Scope}}', 'global-net')).stdout, /global/, 'the other agent sees the network');
  await two.docker('run', '-d', '--name', 'on-two', '--net', 'global-net', 'local/busybox', 'sleep', '600');
  await one.docker('run', '-d', '--name', 'on-one', '--net', 'global-net', 'local/busybox', 'sleep', '600');
  const endpoints = await ds.resources.list('WorkloadEndpoint', 'libnetwork');
  t.deepEqual(endpoints.map((e) => [e.spec.node, e.spec.profiles[0]]).sort(), [['agent-1', 'global-net'], ['agent-2', 'global-net']]);
  const { blocks } = await readIpamState((await world.datastore(prefix)).ds);
  t.deepEqual(blocks.map((b) => b.affinity).sort(), ['host:agent-1', 'host:agent-2'], 'each agent drew from a block of its own');
  await two.docker('rm', '-f', 'on-two');
  await one.docker('rm', '-f', 'on-one');
  await one.docker('network', 'rm', 'global-net');
  await assertNothingLeft(t, ds, []);
});
