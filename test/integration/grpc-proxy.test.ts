import test from 'ava';
import { randomUUID } from 'node:crypto';
import { assertNothingLeft } from '../helpers/cni-world';
import { NodeDaemon } from '../../sim/daemon';
import { DockerAgent } from '../../sim/docker-agent';
import { EtcdGrpcProxy } from '../../sim/etcd-proxy';
import { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld } from '../../sim/world';

let world: CniWorld;
let proxy: EtcdGrpcProxy;
let docker: DockerAgent | undefined;

test.before(async () => {
  world = await CniWorld.create();
  // The proxy beside etcd on the fabric, as one per rack would be: every host reaches etcd through it.
  proxy = await EtcdGrpcProxy.start([world.fabric.etcd.hostEndpoint], { netnsPath: world.fabric.fabric.path, address: new URL(world.fabric.etcd.hostEndpoint).hostname });
});
test.after.always(async () => {
  await docker?.destroy();
  await proxy?.destroy();
  await world?.destroy();
});

test.serial('grpc-proxy - through etcd\'s gRPC proxy alone: CNI ADD and DEL (through the daemon and standalone), a Docker container, and the routes between hosts all work', async (t) => {
  const { prefix, ds } = await world.scenario('proxy', { v4: '10.154.0.0/16', v6: 'fd00:154::/64' });
  const driver = `calico-${Math.random().toString(36).slice(2, 7)}`;
  docker = await DockerAgent.start(await world.fabric.addHost('pxdock'));
  await docker.startDaemon({ etcdEndpoint: proxy.endpoint, prefix, node: 'proxy-0', driver, ipamDriver: `${driver}-ipam`, extraArgs: ['--scope', 'local'] });
  const agent = await world.addAgent();
  const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', proxy.endpoint, '--etcd-prefix', prefix, '--nodename', 'proxy-1']);
  t.teardown(() => daemon.destroy());

  // A Docker container on one host, a CNI task (through its host's daemon) on the other, one network.
  await docker.docker('network', 'create', '-d', driver, '--ipam-driver', `${driver}-ipam`, 'pxnet');
  await docker.docker('run', '-d', '--name', 'px', '--net', 'pxnet', 'local/busybox', 'sleep', '600');
  const dockerIp = await docker.networkSetting('px', 'pxnet', 'IPAddress');
  const task = randomUUID();
  const viaProxy = { etcd_endpoints: proxy.endpoint };
  const launched = await agent.launch(task, [{ network: world.network('pxnet', prefix, 'proxy-1', { ...viaProxy, daemon_socket: daemon.cniSocket }) }]);
  t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
  const taskIp = launched.ips[0]!.ip4!.split('/')[0]!;
  await waitFor('each host to route the other\'s block', async () => (await agent.container(task).ping(dockerIp)), 15_000, 200);
  t.regex((await docker.docker('exec', 'px', 'ping', '-c', '1', '-W', '3', taskIp)).stdout, /1 packets received/, 'and back');

  // A standalone plugin (no daemon) on the Docker host, through the proxy too.
  const mesos = new MesosAgent(docker.host, world.pluginsDir);
  t.teardown(() => mesos.cleanup());
  const standalone = randomUUID();
  const alone = await mesos.launch(standalone, [{ network: world.network('pxnet', prefix, 'proxy-0', { ...viaProxy, daemon_socket: '' }) }]);
  t.is(alone.runs[0]!.code, 0, alone.runs[0]!.stdout);
  // Both hosts' policy takes the new endpoint in from its watch event first.
  await waitFor('the standalone task to reach the other host\'s task', () => mesos.container(standalone).ping(taskIp), 10_000, 200);

  for (const r of await mesos.destroy(standalone)) t.is(r.code, 0, r.stdout);
  for (const r of await agent.destroy(task)) t.is(r.code, 0, r.stdout);
  await docker.docker('rm', '-f', 'px');
  await docker.docker('network', 'rm', 'pxnet');
  await assertNothingLeft(t, ds, []);
});
