import test from 'ava';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';
import { DockerAgent } from '../helpers/docker-agent';
import { parseAddress } from '../../shared/net';

let world: CniWorld;
let agent: DockerAgent;
let prefix: string;
let ds: Awaited<ReturnType<CniWorld['scenario']>>['ds'];
const DRIVER = `calico-${Math.random().toString(36).slice(2, 7)}`;
const IPAM_DRIVER = `${DRIVER}-ipam`;
const NODE = 'docker-agent-1';

test.before(async () => {
  world = await CniWorld.create();
  const host = await world.fabric.addHost('dock');
  agent = await DockerAgent.start(host);
  ({ prefix, ds } = await world.scenario('docker', { v4: '10.220.0.0/16', v6: 'fd00:220::/64' }));
  await agent.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix, node: NODE, driver: DRIVER, ipamDriver: IPAM_DRIVER, extraArgs: ['--scope', 'local'] });
});
test.after.always(async (t) => {
  if (agent) t.log(agent.daemonLog.split('\n').filter((l) => /ERROR|WARN/.test(l)).slice(-20).join('\n'));
  await agent?.destroy();
  await world?.destroy();
});

const ipOf = async (container: string, network: string) =>
  (await agent.docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container)).stdout.trim();

test.serial('docker - calico networks with and without --subnet: containers ping each other, --ip is honoured, rm leaves nothing', async (t) => {
  await agent.docker('network', 'create', '-d', DRIVER, '--ipam-driver', IPAM_DRIVER, 'net1');
  // docker run --ip needs a network with a configured subnet: a Calico pool.
  await agent.docker('network', 'create', '-d', DRIVER, '--ipam-driver', IPAM_DRIVER, '--subnet', '10.220.0.0/16', 'net2');
  await agent.docker('run', '-d', '--name', 'ca', '--net', 'net1', 'local/busybox', 'sleep', '600');
  await agent.docker('run', '-d', '--name', 'cb', '--net', 'net1', 'local/busybox', 'sleep', '600');
  await agent.docker('run', '-d', '--name', 'cc', '--net', 'net2', '--ip', '10.220.99.9', 'local/busybox', 'sleep', '600');
  const [a, b, c] = [await ipOf('ca', 'net1'), await ipOf('cb', 'net1'), await ipOf('cc', 'net2')];
  t.regex(a, /^10\.220\./);
  t.not(a, b);
  t.is(c, '10.220.99.9');
  t.regex((await agent.docker('exec', 'ca', 'ping', '-c', '1', '-W', '3', b)).stdout, /1 packets received/);
  t.regex((await agent.docker('exec', 'cb', 'ping', '-c', '1', '-W', '3', a)).stdout, /1 packets received/);
  t.regex((await agent.docker('exec', 'cc', 'ping', '-c', '1', '-W', '3', a)).stdout, /1 packets received/);

  const endpoints = await ds.resources.list('WorkloadEndpoint', 'libnetwork');
  t.is(endpoints.length, 3);
  t.deepEqual(endpoints.map((e) => e.spec.profiles[0]).sort(), ['net1', 'net1', 'net2']);
  t.true(endpoints.every((e) => e.spec.orchestrator === 'libnetwork' && e.spec.node === NODE));
  t.truthy(await ds.resources.get('Profile', 'net1'), 'each network has its own profile');
  t.truthy(await ds.resources.get('Profile', 'net2'));
  const { ipam } = await world.datastore(prefix);
  const owner = await ipam.ownerOf(parseAddress(a));
  t.is(owner?.attributes.orchestrator, 'libnetwork');
  t.truthy(owner?.attributes.endpoint, 'the address records its endpoint');

  // Stopping a container releases its address, veth and record.
  await agent.docker('stop', '-t', '0', 'cb');
  t.is(await ipam.ownerOf(parseAddress(b)), undefined, 'the stopped container\'s address is free');
  t.is((await ds.resources.list('WorkloadEndpoint', 'libnetwork')).length, 2);

  await agent.docker('rm', '-f', 'ca', 'cb', 'cc');
  await agent.docker('network', 'rm', 'net1', 'net2');
  await assertNothingLeft(t, ds, []);
  const links = await agent.host.json<{ ifname: string }[]>('link', 'show');
  t.deepEqual(links.map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'eth0'), [], 'no veth left');
});
