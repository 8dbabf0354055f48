import test from 'ava';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAddress } from '../../shared/net';
import { NodeDaemon } from '../../sim/daemon';
import { NetmodulesAgent } from '../../sim/netmodules-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';

let world: CniWorld;
let daemon: NodeDaemon | undefined;

test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  await daemon?.destroy();
  await world?.destroy();
});

test.serial('gc - a task that vanished without DEL is cleaned up after the grace period; a live one never is', async (t) => {
  const { prefix, ds, ipam } = await world.scenario('gc');
  const agent = await world.addAgent();
  daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', 'agent-gc', '--gc-interval', '0.5', '--gc-grace', '1.5']);
  const network = world.network('net', prefix, 'agent-gc', { daemon_socket: daemon.cniSocket });
  const [live, gone] = [randomUUID(), randomUUID()];
  const launches = [await agent.launch(live, [{ network }]), await agent.launch(gone, [{ network }])];
  t.deepEqual(launches.map((l) => l.runs[0]!.code), [0, 0]);
  const [liveIp, goneIp] = launches.map((l) => parseAddress(l.ips[0]!.ip4!.split('/')[0]!));

  const vanishedAt = Date.now();
  await agent.vanish(gone);
  await sleep(1000);
  t.truthy(await ipam.ownerOf(goneIp!), 'not collected within the grace period');
  for (let i = 0; i < 100 && (await ipam.ownerOf(goneIp!)); i++) await sleep(100);
  t.is(await ipam.ownerOf(goneIp!), undefined, 'the vanished task\'s address is released');
  t.log(`collected ${Date.now() - vanishedAt} ms after it vanished`);
  // The addresses go first, the record right after.
  await waitFor('the vanished task\'s record to go', async () => (await ds.resources.list('WorkloadEndpoint')).length === 1, 5000).catch(() => undefined);
  const endpoints = await ds.resources.list('WorkloadEndpoint');
  t.deepEqual(endpoints.map((e) => e.spec.containerID), [live], 'its record is gone, the live one stays');
  t.truthy(await ipam.ownerOf(liveIp!), 'the live task keeps its address');
  const collector = daemon;
  await waitFor('the daemon logging the collection', () => collector.stderr.includes('collected the endpoint'), 5000);

  for (const r of await agent.destroy(live)) t.is(r.code, 0);
  await assertNothingLeft(t, ds, [agent]);
});

test.serial('metrics - the daemon serves Prometheus metrics of its requests, IPAM use, etcd errors and policy programming', async (t) => {
  const agent = world.agents[0]!;
  const { prefix } = await world.scenario('metrics');
  const metricsDaemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', 'agent-m', '--metrics-address', '127.0.0.1:9199', '--no-routes']);
  t.teardown(() => metricsDaemon.destroy());
  const network = world.network('net', prefix, 'agent-m', { daemon_socket: metricsDaemon.cniSocket });
  const id = randomUUID();
  t.is((await agent.launch(id, [{ network }])).runs[0]!.code, 0);
  const bad = await agent.launch(randomUUID(), [{ network: { ...network, ipam: { type: 'calico-ipam', ipv4_pools: ['no-such-pool'] } } }]);
  t.is(bad.runs[0]!.code, 1);
  const scrape = async () => (await agent.host.exec(process.execPath, ['-e', 'fetch("http://127.0.0.1:9199/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))'])).stdout;
  const text = await scrape();
  t.regex(text, /calico_requests_total\{driver="cni",call="calico ADD",outcome="ok"\} 1/);
  t.regex(text, /calico_requests_total\{driver="cni",call="calico ADD",outcome="error"\} 1/);
  t.regex(text, /calico_request_duration_seconds_bucket\{le="\+Inf",driver="cni",call="calico ADD"\} 2/);
  t.regex(text, /calico_ipam_addresses_in_use\{pool="10\.200\.0\.0\/16",host="agent-m"\} 1/);
  t.regex(text, /# TYPE calico_etcd_errors_total counter/);
  // The policy job reports what it programmed.
  t.regex(text, /calico_policy_rules \d+/);
  t.regex(text, /calico_policy_last_sync_seconds\{kind="full"\} [\d.e-]+/);
  t.regex(text, /# TYPE calico_policy_sync_failures_total counter/);
  t.false(/container|[0-9a-f]{8}-[0-9a-f]{4}/.test(text.split('\n').filter((l) => !l.startsWith('#')).join('\n')), 'no per-container labels');
  for (const r of await agent.destroy(id)) t.is(r.code, 0);
});

test.serial('gc - net-modules: a container its agent forgot (executor gone, no cleanup) and an allocation never isolated are collected after the grace period; a live container keeps everything', async (t) => {
  const { prefix, ds, ipam } = await world.scenario('gc-nm');
  const agent = world.agents[0]!;
  const node = 'agent-gc-nm';
  const collector = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', node, '--gc-interval', '0.5', '--gc-grace', '1.5', '--no-routes', '--metrics-address', '']);
  t.teardown(() => collector.destroy());
  const mesos = new NetmodulesAgent(agent.host, { ETCD_ENDPOINTS: world.fabric.etcd.hostEndpoint, ETCD_PREFIX: prefix, NODENAME: node }, 'agent-host');
  t.teardown(() => mesos.cleanupAll());
  const [live, forgotten] = [randomUUID(), randomUUID()];
  const liveIps = (await mesos.launch(live, { netgroups: ['g'] })).ips;
  const forgottenIps = (await mesos.launch(forgotten, { netgroups: ['g'], autoIpv4: 2 })).ips;
  const orphan = await mesos.call('allocate', { hostname: 'agent-host', uid: 'prepared-then-agent-restarted', num_ipv4: 1, num_ipv6: 0 });
  t.is(orphan.answer?.error, null, orphan.stdout);
  await mesos.vanish(forgotten);

  const gone = [...forgottenIps, ...orphan.answer!.ipv4!].map((ip) => parseAddress(ip));
  // The collector releases a workload's addresses before it deletes its record (a crash between the
  // two leaves a record to retry from), so the test waits for both.
  const collected = async () => (await Promise.all(gone.map((a) => ipam.ownerOf(a)))).every((o) => o === undefined)
    && (await ds.resources.list('WorkloadEndpoint')).every((e) => e.spec.workload !== forgotten);
  await waitFor('the forgotten container and the orphan allocation to be collected', collected, 15_000);
  t.deepEqual((await ds.resources.list('WorkloadEndpoint')).map((e) => e.spec.workload), [live], 'only the live container\'s record stays');
  t.truthy(await ipam.ownerOf(parseAddress(liveIps[0]!)), 'the live container keeps its address past the grace period');
  for (const call of await mesos.destroy(live)) t.is(call.answer?.error, null, call.stdout);
  await assertNothingLeft(t, ds, [agent]);
});
