/**
 * The node daemon (one per agent). It wires its jobs together, each in a room of its own:
 * - the CNI plugins' forwarded commands on a unix socket (daemon/cni-service.ts);
 * - Docker's remote NetworkDriver and IpamDriver on sockets in Docker's plugin directory (cnm/);
 * - this host's Node record and its routes to every host's blocks (daemon/route-keeper.ts);
 * - garbage collection of workloads that vanished without a DEL (daemon/garbage-collector.ts);
 * - giving back empty blocks the host no longer needs (daemon/block-reclaimer.ts);
 * - enforcing Calico policy with nftables (daemon/policy-keeper.ts);
 * - Prometheus metrics on a local address (daemon/metrics.ts).
 * etcd connections are shared and kept warm, and its IPAM client serves concurrent requests in
 * batches (group commit). SIGTERM/SIGINT finish requests in flight and remove the sockets.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { parseCommandLine } from '../shared/command-line';
import { Connections } from '../shared/connections';
import { DEFAULT_DAEMON_SOCKET } from '../shared/invocation';
import { DockerApi } from '../cnm/docker-api';
import { IpamDriver } from '../cnm/ipam-driver';
import { NetworkDriver } from '../cnm/network-driver';
import { DriverServer, driverApp } from '../cnm/server';
import { etcdSettingsFrom } from '../shared/datastore/settings';
import { validateMtu } from '../shared/dataplane/names';
import { Logger, asyncStderrSink, type Level } from '../shared/log';
import { defaultNodename } from '../shared/nodename';
import { BlockReclaimer } from './block-reclaimer';
import { CniService } from './cni-service';
import { GarbageCollector } from './garbage-collector';
import { Metrics } from './metrics';
import { PolicyKeeper } from './policy-keeper';
import { protectedServices } from './protected-services';
import { NodeClaim } from './node-claim';
import { MalformedRecordLog } from './malformed-records';
import { detectHostAddresses } from '../shared/dataplane/routes';
import { birdMissing } from '../shared/dataplane/bird';
import { hostLinksDeleted } from '../shared/dataplane/workload';
import { dropSpareIpRuns, keepSpareIpRuns } from '../shared/dataplane/ip-command';
import { stopCommandHelper, useCommandHelper } from '../shared/dataplane/command-runner';
import { RouteKeeper } from './route-keeper';
import { ClusterView } from '../shared/cluster-view/cluster-view';
import { ROUTING_BACKENDS, type RoutingBackend } from '../shared/routing/desired-routes';
import { DEFAULT_MTU_FILE } from '../shared/routing/workload-mtu';

const LEVELS: readonly Level[] = ['debug', 'info', 'warning', 'error'];

function nodename(flag: string | undefined): string {
  return flag || process.env.NODENAME || defaultNodename();
}

const USAGE = `usage: calico-libnetwork [options]
  The node daemon: Docker's calico and calico-ipam drivers, the CNI plugins' fast path, routes,
  garbage collection and metrics for this host.
  --cni-socket PATH            where the CNI plugins find the daemon (/var/run/calico/cni.sock)
  --plugin-dir DIR             where the Docker driver sockets go (/run/docker/plugins)
  --network-driver NAME        Docker network driver name (calico)
  --ipam-driver NAME           Docker IPAM driver name (calico-ipam)
  --etcd-endpoints URLS        etcd (ETCD_ENDPOINTS, else http://127.0.0.1:2379)
  --etcd-ca-cert-file F, --etcd-cert-file F, --etcd-key-file F, --etcd-prefix P
  --etcd-username U, --etcd-password P   etcd's own authentication (ETCD_USERNAME, ETCD_PASSWORD;
                               the environment keeps the password out of the process list)
  --nodename NAME              this host in the datastore (NODENAME, /var/lib/calico/nodename, host name)
  --scope global|local         Docker network scope (global)
  --veth-mtu N                 MTU of Docker containers' veths (the node's, below)
  --mtu-file F                 where this daemon records the workloads' MTU: its tunnels' link's,
                               less their overhead; plugins without an MTU of their own read it
                               (CALICO_MTU_FILE, /var/lib/calico/mtu)
  --container-if-prefix P      interface name prefix inside Docker containers (cali)
  --no-label-endpoints         do not copy containers' org.projectcalico.label.* labels onto their
                               endpoints (CALICO_LIBNETWORK_LABEL_ENDPOINTS=false)
  --docker-host URL            Docker's API (unix:///var/run/docker.sock)
  --node-address A             auto, none or A.B.C.D/LEN: this host's Node address (auto)
  --backend B                  how workloads on other hosts are reached: bird (BGP), vxlan,
                               static (same-link routes), none (CALICO_NETWORKING_BACKEND; static);
                               each pool's ipipMode/vxlanMode encapsulates in every backend
  --bird-dir DIR               BIRD's configuration and control socket (/var/run/calico/bird)
  --no-routes                  leave routes and tunnels to something else
  --route-repair S             compare routes, tunnels and BIRD with the kernel every S seconds,
                               each host at its own moment within 20% (300; 0: only after failures)
  --no-policy                  enforce no policy (and remove our nftables table, inet calico)
  --policy-resync S            reprogram the whole policy table every S seconds (300)
  --gc-interval S, --gc-grace S      garbage collection every S seconds (60), after S seconds gone (300)
  --block-release-delay S      release empty blocks (but one) after S seconds empty; 0: never (300)
  --metrics-address HOST:PORT  Prometheus metrics ("" turns them off) (127.0.0.1:9099)
  --log-level L                debug, info, warning, error (info)
  -h, --help                   this text`;

async function main(): Promise<void> {
  const { values } = parseCommandLine('calico-libnetwork', USAGE, process.argv.slice(2), {
      'cni-socket': { type: 'string', default: process.env.CALICO_CNI_SOCKET ?? DEFAULT_DAEMON_SOCKET },
      'plugin-dir': { type: 'string', default: process.env.CALICO_PLUGIN_DIR ?? '/run/docker/plugins' },
      'network-driver': { type: 'string', default: process.env.CALICO_NETWORK_DRIVER ?? 'calico' },
      'ipam-driver': { type: 'string', default: process.env.CALICO_IPAM_DRIVER ?? 'calico-ipam' },
      'etcd-endpoints': { type: 'string' },
      'etcd-ca-cert-file': { type: 'string' },
      'etcd-cert-file': { type: 'string' },
      'etcd-key-file': { type: 'string' },
      'etcd-username': { type: 'string' },
      'etcd-password': { type: 'string' },
      'etcd-prefix': { type: 'string' },
      nodename: { type: 'string' },
      scope: { type: 'string', default: 'global' },
      'veth-mtu': { type: 'string', default: process.env.CALICO_LIBNETWORK_VETH_MTU },
      'mtu-file': { type: 'string', default: process.env.CALICO_MTU_FILE ?? DEFAULT_MTU_FILE },
      'container-if-prefix': { type: 'string', default: 'cali' },
      'no-label-endpoints': { type: 'boolean', default: process.env.CALICO_LIBNETWORK_LABEL_ENDPOINTS === 'false' },
      'docker-host': { type: 'string', default: process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock' },
      'log-level': { type: 'string', default: process.env.CALICO_LOG_LEVEL ?? 'info' },
      'node-address': { type: 'string', default: process.env.CALICO_NODE_ADDRESS ?? 'auto' },
      'no-routes': { type: 'boolean', default: false },
      'route-repair': { type: 'string', default: '300' },
      backend: { type: 'string', default: process.env.CALICO_NETWORKING_BACKEND ?? 'static' },
      'bird-dir': { type: 'string', default: '/var/run/calico/bird' },
      'no-policy': { type: 'boolean', default: false },
      'policy-resync': { type: 'string', default: '300' },
      'gc-interval': { type: 'string', default: '60' },
      'gc-grace': { type: 'string', default: '300' },
      'block-release-delay': { type: 'string', default: '300' },
      'metrics-address': { type: 'string', default: process.env.CALICO_METRICS_ADDRESS ?? '127.0.0.1:9099' },
  });
  const level = values['log-level'] as Level;
  if (!LEVELS.includes(level)) throw new Error(`--log-level must be one of ${LEVELS.join(', ')}`);
  if (values.scope !== 'global' && values.scope !== 'local') throw new Error('--scope must be global or local');
  for (const name of [values['network-driver']!, values['ipam-driver']!]) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new Error(`driver name "${name}" must be letters, digits, _ . -`);
  }
  const mtu = values['veth-mtu'] === undefined ? undefined : validateMtu(Number(values['veth-mtu']), '--veth-mtu');
  const mtuFile = values['mtu-file']!;
  const etcd = etcdSettingsFrom({
    etcd_endpoints: values['etcd-endpoints'],
    etcd_ca_cert_file: values['etcd-ca-cert-file'],
    etcd_cert_file: values['etcd-cert-file'],
    etcd_key_file: values['etcd-key-file'],
    etcd_username: values['etcd-username'],
    etcd_password: values['etcd-password'],
    etcd_prefix: values['etcd-prefix'],
  });
  const node = nodename(values.nodename);
  const stderr = asyncStderrSink();
  const log = new Logger(level, [stderr], { daemon: 'calico-libnetwork', node });
  // Before anything runs a command: the daemon's forks would stall its event loop.
  useCommandHelper();
  keepSpareIpRuns();

  const malformed = new MalformedRecordLog(log);
  const connections = new Connections();
  const docker = new DockerApi(values['docker-host']!);
  const datastore = async () => ({ ds: await connections.datastore(etcd), ipam: await connections.ipam(etcd) });
  const ipamDriver = new IpamDriver(async () => (await datastore()).ipam, node, log.with({ driver: 'ipam' }));
  const networkDriver = new NetworkDriver(datastore, docker, {
    node,
    scope: values.scope,
    mtu,
    mtuFile,
    containerIfPrefix: values['container-if-prefix']!,
    labelEndpoints: !values['no-label-endpoints'],
  }, log.with({ driver: 'network' }));

  const seconds = (flag: 'gc-interval' | 'gc-grace' | 'block-release-delay' | 'policy-resync' | 'route-repair') => {
    const n = Number(values[flag]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} must be a number of seconds (0 turns it off)`);
    return n * 1000;
  };
  const collector = new GarbageCollector(datastore, docker, { node, intervalMs: seconds('gc-interval'), graceMs: seconds('gc-grace') }, log.with({ job: 'gc' }));
  const blocks = new BlockReclaimer(async () => (await datastore()).ipam, { node, delayMs: seconds('block-release-delay'), spare: 1 }, log.with({ job: 'blocks' }));
  const backend = values.backend as RoutingBackend;
  if (!ROUTING_BACKENDS.includes(backend)) throw new Error(`--backend must be one of ${ROUTING_BACKENDS.join(', ')}`);
  const noBird = backend === 'bird' && !values['no-routes'] ? birdMissing() : undefined;
  if (noBird) log.error(`${noBird}; until it is, this host neither learns nor announces routes`);
  // What the route keeper follows of the cluster, read once and then watched.
  const view = values['no-routes'] ? undefined : new ClusterView(async () => (await datastore()).ds, log.with({ job: 'view' }));
  const routes = view && new RouteKeeper(datastore, view, { node, nodeAddress: values['node-address']!, backend, birdDir: values['bird-dir']!, mtuFile, repairMs: seconds('route-repair') }, log.with({ job: 'routes' }));
  const resyncMs = seconds('policy-resync');
  if (resyncMs === 0) throw new Error('--policy-resync must be more than 0 seconds (--no-policy turns policy off)');
  const metrics = new Metrics(async () => (await datastore()).ipam, node, log);
  const policy = values['no-policy'] ? undefined : new PolicyKeeper(async () => (await datastore()).ds, {
    node,
    resyncMs,
    protectedServices: await protectedServices(etcd.endpoints, values['metrics-address']!, log.with({ job: 'policy' })),
  }, log.with({ job: 'policy' }), malformed, (report) => metrics.policy(report));
  const served = (driver: string) => (call: string, ok: boolean, seconds: number) => metrics.request(driver, call, ok, seconds);

  const nodeAddress = values['node-address']!;
  const claim = new NodeClaim(async () => (await datastore()).ds, node, nodeAddress === 'auto' ? (await detectHostAddresses()).ipv4 : nodeAddress === 'none' ? undefined : nodeAddress, log, (err) => {
    log.error(err.message);
    void stop('node name taken', 1);
  });
  const services = [
    new CniService(values['cni-socket']!, connections, node, log, served('cni')),
    new DriverServer(driverApp('IpamDriver', ipamDriver.handlers(), log, served('ipam')), join(values['plugin-dir']!, `${values['ipam-driver']}.sock`)),
    new DriverServer(driverApp('NetworkDriver', networkDriver.handlers(), log, served('network')), join(values['plugin-dir']!, `${values['network-driver']}.sock`)),
  ];
  // Signals are handled from the start: a stop during start-up still removes what was created.
  const started: typeof services = [];
  let stopping = false;
  const stop = async (signal: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    networkDriver.stop();
    await Promise.allSettled([...started.map((s) => s.stop()), routes?.stop(), view?.stop(), policy?.stop(), collector.stop(), blocks.stop(), metrics.stop()]);
    // After the requests in flight, whose DELs may have begun some.
    await hostLinksDeleted();
    dropSpareIpRuns();
    stopCommandHelper();
    await claim.stop();
    await connections.close();
    await stderr.flush();
    process.exit(exitCode);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // Workloads are closed before anything can wire one: the policy table's fixed part comes first.
  const tableReady = policy ? policy.start() : PolicyKeeper.remove(log);
  // Connecting loads gRPC and etcd's client (tens of milliseconds of the event loop): begun now,
  // it passes while nft installs the table, not after it. Its failure is the first caller's.
  datastore().catch(() => undefined);
  await tableReady;
  // One daemon per node name: a live one elsewhere with this name stops this one, before it writes as the node.
  await claim.start();
  for (const service of services) {
    if (stopping) return;
    started.push(service);
    await service.start();
  }
  log.info('started', { plugins: values['plugin-dir'], cniSocket: values['cni-socket'], etcd: etcd.endpoints.join(',') });
  // Under systemd (Type=notify): ready, so the units ordered after this one (Docker, the Mesos agent) may start.
  if (process.env.NOTIFY_SOCKET) execFile('systemd-notify', ['--ready', `--pid=${process.pid}`], (err) => err && log.warning('cannot tell systemd the daemon is ready', { error: err.message }));
  void claim.held.then(() => {
    view?.start();
    routes?.start();
  });
  collector.start();
  blocks.start();
  if (values['metrics-address']) await metrics.listen(values['metrics-address']).catch((err: Error) => log.warning('metrics are not served', { error: err.message }));
  void networkDriver.reconcile().catch((err: unknown) => log.warning('could not check existing endpoints', { error: err instanceof Error ? err.message : String(err) }));
}

main().catch((err: unknown) => {
  process.stderr.write(`calico-libnetwork: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
