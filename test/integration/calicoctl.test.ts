import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Datastore, etcdSettingsFrom } from '../../shared/datastore';
import { Ipam } from '../../shared/ipam/ipam';
import { uniquePrefix } from '../../sim/etcd';
import { useEtcd } from '../helpers/etcd-hooks';

const clients: Datastore[] = [];
const server = useEtcd(test, clients);
const dir = mkdtempSync(join(tmpdir(), 'calicoctl-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

interface Ctl {
  (args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  ds: Datastore;
  ipam: Ipam;
}

async function ctlFor(label: string): Promise<Ctl> {
  const prefix = uniquePrefix(label);
  const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: server.etcd.endpoint }, {}), prefix });
  clients.push(ds);
  const ctl = ((args: string[], input?: string) => new Promise((done) => {
    const child = execFile(resolve('dist/bin/calicoctl'), args, { env: { PATH: process.env.PATH, ETCD_ENDPOINTS: server.etcd.endpoint, ETCD_PREFIX: prefix } }, (err, stdout, stderr) => {
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input ?? '');
  })) as Ctl;
  ctl.ds = ds;
  ctl.ipam = new Ipam(ds);
  return ctl;
}

test('calicoctl - pools: add, list in every format, yaml round-trips through apply, overlaps and busy pools refused', async (t) => {
  const ctl = await ctlFor('pools');
  t.regex((await ctl(['pool', 'add', '10.60.0.0/16', '--block-size', '28', '--name', 'p1'])).stdout, /Pool p1 \(10\.60\.0\.0\/16\) created/);
  const overlap = await ctl(['pool', 'add', '10.60.128.0/17']);
  t.is(overlap.code, 1);
  t.regex(overlap.stderr, /overlaps pool p1/);
  t.false(/\n\s+at /.test(overlap.stderr), 'no stack trace');
  const listing = await ctl(['get', 'ippool', '-o', 'wide']);
  t.regex(listing.stdout, /p1\s+10\.60\.0\.0\/16\s+false\s+Never\s+Never\s+false\s+28\s+all\(\)/);
  const yaml = (await ctl(['get', 'ippool', 'p1', '-o', 'yaml'])).stdout;
  t.regex(yaml, /kind: IPPool/);
  const edited = yaml.replace('disabled: false', 'disabled: true');
  t.is((await ctl(['apply', '-f', '-'], edited)).code, 0);
  t.true((await ctl.ds.resources.get('IPPool', 'p1'))!.spec.disabled);
  const stale = await ctl(['replace', '-f', '-'], yaml);
  t.regex(stale.stderr, /changed since resourceVersion/, 'a stale resourceVersion is refused');
  const json = JSON.parse((await ctl(['get', 'ippools', '-o', 'json'])).stdout);
  t.is(json.kind, 'IPPoolList');
  t.is((await ctl(['apply', '-f', '-'], JSON.stringify(json))).code, 0, 'a list applies back');

  const enable = await ctl(['apply', '-f', '-'], yaml.replace(/^ *resourceVersion: .*\n/m, ''));
  t.is(enable.code, 0, enable.stderr);
  t.false((await ctl.ds.resources.get('IPPool', 'p1'))!.spec.disabled, 'applied without a resourceVersion: last writer wins');
  await ctl.ipam.autoAssign({ handle: 'busy.1', node: 'n1', num4: 1, num6: 0 });
  const busy = await ctl(['pool', 'rm', 'p1']);
  t.regex(busy.stderr, /still has 1 address\(es\) in use/);
  await ctl.ipam.releaseByHandle('busy.1');
  t.regex((await ctl(['pool', 'rm', '10.60.0.0/16'])).stdout, /removed/);
});

test('calicoctl - resources from multi-document YAML; bad documents name where they are', async (t) => {
  const ctl = await ctlFor('docs');
  const docs = [
    'apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: web\nspec:\n  labelsToApply:\n    web: ""',
    'apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: host-a\nspec:\n  bgp:\n    ipv4Address: 10.0.0.11/24',
    'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p2\nspec:\n  cidr: 10.70.0.0/16',
  ].join('\n---\n');
  const file = join(dir, 'docs.yaml');
  writeFileSync(file, docs);
  t.regex((await ctl(['create', '-f', file])).stdout, /Successfully created 3 resource/);
  t.regex((await ctl(['create', '-f', file])).stderr, /already exists/);
  t.regex((await ctl(['get', 'nodes', '-o', 'wide'])).stdout, /host-a\s+10\.0\.0\.11\/24/);
  t.regex((await ctl(['get', 'profile'])).stdout, /web/);
  const badPool = 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p3\nspec:\n  cidr: 10.80.0.1/16\n';
  t.regex((await ctl(['apply', '-f', '-'], badPool)).stderr, /stdin: pool p3: invalid spec\.cidr: "10\.80\.0\.1\/16" is not a network address/);
  const badSecond = await ctl(['apply', '-f', '-'], `${badPool.replace('10.80.0.1', '10.80.0.0')}---\nkind: Frob\n`);
  t.regex(badSecond.stderr, /document 2 of stdin: apiVersion must be projectcalico\.org\/v3/);
  t.is(await ctl.ds.resources.get('IPPool', 'p3'), undefined, 'every document is checked before any is written');
  t.regex((await ctl(['apply', '-f', '-'], 'a: [')).stderr, /stdin is not valid YAML/);
  t.regex((await ctl(['get', 'frobs'])).stderr, /unknown resource kind "frobs"/);
  t.regex((await ctl(['delete', '-f', file])).stdout, /Successfully deleted 3/);
  t.regex((await ctl(['get', 'profile', 'web'])).stderr, /Profile "web" does not exist/);
});

test('calicoctl - ipam show, --show-blocks, --ip; configure; datastore init; node status', async (t) => {
  const ctl = await ctlFor('ipam');
  t.regex((await ctl(['datastore', 'init', '--default-pool', '10.90.0.0/24'])).stdout, /datastoreReady: true[\s\S]*default-ipv4-ippool \(10\.90\.0\.0\/24\) created/);
  t.regex((await ctl(['get', 'clusterinformation', 'default', '-o', 'yaml'])).stdout, /datastoreReady: true/);
  t.regex((await ctl(['get', 'felixconfiguration', '-o', 'wide'])).stdout, /default\s+Accept/, 'executors reach their agents');
  await ctl.ds.resources.update({ ...(await ctl.ds.resources.get('FelixConfiguration', 'default'))!, spec: { defaultEndpointToHostAction: 'Drop' } });
  t.notRegex((await ctl(['datastore', 'init'])).stdout, /FelixConfiguration/, 'an operator\'s own setting is never overwritten');
  t.is((await ctl.ds.resources.get('FelixConfiguration', 'default'))!.spec.defaultEndpointToHostAction, 'Drop');
  const { ipv4 } = await ctl.ipam.autoAssign({ handle: 'net.c1', node: 'host-a', num4: 3, num6: 0, attributes: { container: 'c1' } });
  const show = (await ctl(['ipam', 'show'])).stdout;
  t.regex(show, /IP Pool\s+10\.90\.0\.0\/24\s+256\s+3 \(1%\)\s+253 \(99%\)/);
  t.regex((await ctl(['ipam', 'show', '--show-blocks'])).stdout, /Block\s+10\.90\.0\.\d+\/26\s+64\s+3 \(5%\)\s+61 \(95%\)\s+host:host-a/);
  const ip = (await ctl(['ipam', 'show', '--ip', ipv4[0]!.value ? `10.90.0.${Number(ipv4[0]!.value & 255n)}` : ''])).stdout;
  t.regex(ip, /is in use[\s\S]*Handle: net\.c1[\s\S]*container: c1/);
  t.regex((await ctl(['ipam', 'show', '--ip', '10.90.0.250'])).stdout, /10\.90\.0\.250 is not assigned/);
  t.regex((await ctl(['ipam', 'configure', '--strict-affinity=true'])).stdout, /strict affinity true/);
  t.regex((await ctl(['get', 'ipamconfig'])).stdout, /default\s+true\s+0/);
  await ctl.ds.resources.create({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name: 'host-a' }, spec: { bgp: { ipv4Address: '10.0.0.11/24' } } });
  t.regex((await ctl(['node', 'status'])).stdout, /host-a\s+10\.0\.0\.11\/24\s+1\s+3\s+0/);
});

test('calicoctl - ipam check finds each kind of problem; release --from-report frees exactly the leaks, or nothing if the data changed', async (t) => {
  const ctl = await ctlFor('check');
  await ctl.ipam.createPool('p', { cidr: '10.95.0.0/24' });
  t.is((await ctl(['ipam', 'check'])).code, 0);
  // A leak: allocated, no endpoint. An endpoint whose address is not allocated. A handle with nothing.
  const leak = await ctl.ipam.autoAssign({ handle: 'net.leaked', node: 'h', num4: 2, num6: 0 });
  const live = await ctl.ipam.autoAssign({ handle: 'net.live', node: 'h', num4: 1, num6: 0 });
  await ctl.ds.resources.create({ kind: 'WorkloadEndpoint', apiVersion: 'projectcalico.org/v3', metadata: { name: 'h-cni-live-eth0', namespace: 'default' }, spec: { orchestrator: 'cni', node: 'h', endpoint: 'eth0', ipNetworks: [`10.95.0.${Number(live.ipv4[0]!.value & 255n)}/32`, '10.95.0.200/32'], profiles: ['net'], interfaceName: 'calilive' } });
  await ctl.ds.kv.txn([{ key: ctl.ds.keys.handle('net.empty'), put: '{"block":{},"deleted":false}' }]);
  const report = join(dir, 'report.json');
  const check = await ctl(['ipam', 'check', '-o', report, '--grace-period', '0']);
  t.is(check.code, 1, 'problems make a non-zero exit');
  t.regex(check.stdout, /Addresses allocated with no endpoint \(2\)/);
  t.regex(check.stdout, /10\.95\.0\.200 of default\/h-cni-live-eth0/);
  t.regex(check.stdout, /Handles holding no address \(1\):\n  net\.empty/);
  const parsed = JSON.parse(readFileSync(report, 'utf8'));
  t.deepEqual(parsed.allocatedWithoutEndpoint.map((l: { handle: string }) => l.handle), ['net.leaked', 'net.leaked']);
  t.is((await ctl(['ipam', 'check', '--grace-period', '3600'])).stdout.includes('allocated with no endpoint'), false, 'young allocations get a grace period');

  // The data changes: refused, nothing released.
  await ctl.ipam.release([leak.ipv4[0]!], (a) => a.handle_id === 'net.leaked');
  const refused = await ctl(['ipam', 'release', '--from-report', report]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /the data changed since .* nothing was released/);
  t.truthy(await ctl.ipam.ownerOf(leak.ipv4[1]!), 'the other leak is untouched');

  await ctl(['ipam', 'check', '-o', report, '--grace-period', '0']);
  t.regex((await ctl(['ipam', 'release', '--from-report', report])).stdout, /Released 1 leaked address/);
  t.is(await ctl.ipam.ownerOf(leak.ipv4[1]!), undefined);
  t.truthy(await ctl.ipam.ownerOf(live.ipv4[0]!), 'a live allocation is never released');
});

test('calicoctl - etcd settings: a missing config file and an unreachable etcd are named', async (t) => {
  const ctl = await ctlFor('settings');
  const missing = await ctl(['--config', '/nonexistent/calicoctl.cfg', 'get', 'ippool']);
  t.regex(missing.stderr, /config file \/nonexistent\/calicoctl\.cfg does not exist/);
  const cfg = join(dir, 'calicoctl.cfg');
  writeFileSync(cfg, `apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: ${server.etcd.endpoint}\n`);
  const viaFile = await new Promise<{ code: number; stdout: string }>((done) => {
    execFile(resolve('dist/bin/calicoctl'), ['--config', cfg, 'get', 'ippool'], { env: { PATH: process.env.PATH } }, (err, stdout) => done({ code: err ? 1 : 0, stdout }));
  });
  t.is(viaFile.code, 0, 'the config file is read');
  const down = await ctl(['--etcd-endpoints', 'http://127.0.0.1:1', 'get', 'ippool']);
  t.is(down.code, 1);
  t.regex(down.stderr, /etcd at http:\/\/127\.0\.0\.1:1 is unavailable/);
  t.regex((await ctl(['frobnicate'])).stderr, /unknown command "frobnicate"/);
});

test('calicoctl - policies: create, apply, get and delete GlobalNetworkPolicy, NetworkPolicy and FelixConfiguration; every bad selector or rule refused with its field and position, nothing written', async (t) => {
  const ctl = await ctlFor('policy');
  const gnp = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  order: 100
  selector: has(pcn.netA) && app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: "app == 'web-client'"}
    destination: {ports: [80, "8000:8080"]}
  - action: Pass
`;
  const np = `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-udp, namespace: libnetwork}
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress: [{action: Deny, protocol: UDP}]
  egress: [{action: Allow}]
`;
  const felix = 'apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {defaultEndpointToHostAction: Accept}\n';
  const created = await ctl(['create', '-f', '-'], [gnp, np, felix].join('---\n'));
  t.is(created.code, 0, created.stderr);
  t.regex(created.stdout, /Successfully created 3 resource/);
  t.regex((await ctl(['get', 'gnp', '-o', 'wide'])).stdout, /web\s+100\s+has\(pcn\.netA\) && app == 'web'/);
  t.regex((await ctl(['get', 'networkpolicy', '-n', 'libnetwork'])).stdout, /libnetwork\s+deny-udp/);
  t.regex((await ctl(['get', 'felixconfiguration', '-o', 'wide'])).stdout, /default\s+Accept/);
  t.regex((await ctl(['get', 'gnp', 'web', '-o', 'yaml'])).stdout, /8000:8080/);
  t.is((await ctl(['apply', '-f', '-'], gnp.replace('order: 100', 'order: 50'))).code, 0);
  t.is((await ctl.ds.resources.get('GlobalNetworkPolicy', 'web'))!.spec.order, 50);

  const refused: [string, RegExp][] = [
    [gnp.replace("app == 'web'", "app = 'web'"), /GlobalNetworkPolicy "refused": spec\.selector: invalid selector "has\(pcn\.netA\) && app = 'web'": unexpected character "=" at position 21/],
    [gnp.replace('"app == \'web-client\'"', '"has(app"'), /spec\.ingress\[0\]\.source\.selector: invalid selector "has\(app": expected "\)" to close has\(app, found the end at position 7/],
    [gnp.replace('protocol: TCP', 'protocol: ICMP'), /spec\.ingress\[0\]\.destination\.ports: ports need protocol TCP, UDP, SCTP or UDPLite/],
    [gnp.replace('"8000:8080"', '"9000:8080"'), /spec\.ingress\[0\]\.destination\.ports\[1\]: range "9000:8080" ends before it starts/],
    [gnp.replace('action: Pass', 'action: Reject'), /spec\.ingress\[1\]\.action: must be one of Allow, Deny, Log, Pass, not "Reject"/],
    [gnp.replace('  order: 100', '  doNotTrack: true'), /spec\.doNotTrack: doNotTrack policies are not supported/],
    [gnp.replace('  order: 100', '  preDNAT: true'), /spec\.preDNAT: preDNAT policies are not supported/],
    [np.replace('protocol: UDP', 'protocol: UDP, source: {nets: [10.0.0.0/33]}'), /spec\.ingress\[0\]\.source\.nets\[0\]: .*invalid prefix length/],
    [felix.replace('Accept', 'Maybe'), /spec\.defaultEndpointToHostAction: must be one of Drop, Accept, Return/],
  ];
  for (const [document, message] of refused) {
    const renamed = document.replace(/name: (web|deny-udp|default)/, 'name: refused');
    const run = await ctl(['apply', '-f', '-'], renamed);
    t.not(run.code, 0);
    t.regex(run.stderr, message);
  }
  for (const kind of ['GlobalNetworkPolicy', 'FelixConfiguration'] as const) t.is(await ctl.ds.resources.get(kind, 'refused'), undefined, 'nothing written');
  t.is(await ctl.ds.resources.get('NetworkPolicy', 'refused', 'libnetwork'), undefined);

  t.regex((await ctl(['delete', 'gnp', 'web'])).stdout, /deleted/i);
  t.regex((await ctl(['delete', 'networkpolicy', 'deny-udp', '-n', 'libnetwork'])).stdout, /deleted/i);
  t.regex((await ctl(['get', 'gnp', 'web'])).stderr, /GlobalNetworkPolicy "web" does not exist/);
});

test('calicoctl - BGP: BGPConfiguration and BGPPeer created, listed and deleted; a bad address, AS number or selector, or a pool with an unknown or double encapsulation refused with its field, nothing written', async (t) => {
  const ctl = await ctlFor('ctl-bgp');
  const documents = `apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 65001
  nodeToNodeMeshEnabled: false
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  nodeSelector: rack == 'r1'
  peerIP: 10.99.0.254
  asNumber: 65100
`;
  const created = await ctl(['create', '-f', '-'], documents);
  t.is(created.code, 0, created.stderr);
  t.regex((await ctl(['get', 'bgpconfig'])).stdout, /default\s+Info\s+false\s+65001/);
  t.regex((await ctl(['get', 'bgppeers'])).stdout, /rack1-tor\s+10\.99\.0\.254\s+rack == 'r1'\s+65100/);

  const peer = documents.split('---\n')[1]!.replace('name: rack1-tor', 'name: refused');
  const pool = 'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: refused\nspec:\n  cidr: 10.250.0.0/16\n';
  const refused: [string, RegExp][] = [
    [peer.replace('10.99.0.254', '10.99.0.300'), /BGPPeer "refused": spec\.peerIP: "10\.99\.0\.300" is not an IP address/],
    [peer.replace('65100', '-3'), /spec\.asNumber: -3 is not an AS number/],
    [peer.replace("rack == 'r1'", "rack == 'r1"), /spec\.nodeSelector: .*position/],
    [`${pool}  vxlanMode: Sometimes\n`, /spec\.vxlanMode "Sometimes" is not one of Never, Always, CrossSubnet/],
    [`${pool}  vxlanMode: Always\n  ipipMode: Always\n`, /cannot both be enabled/],
  ];
  for (const [document, message] of refused) {
    const run = await ctl(['apply', '-f', '-'], document);
    t.not(run.code, 0);
    t.regex(run.stderr, message);
  }
  t.is(await ctl.ds.resources.get('BGPPeer', 'refused'), undefined, 'nothing written');
  t.is(await ctl.ds.resources.get('IPPool', 'refused'), undefined);
  t.regex((await ctl(['delete', 'bgppeer', 'rack1-tor'])).stdout, /deleted/i);

  // The sample resources in conf/ are taken as they are.
  for (const sample of ['conf/bgp-racks.yaml', 'conf/ippool-vxlan.yaml']) {
    const applied = await ctl(['apply', '-f', sample]);
    t.is(applied.code, 0, `${sample}: ${applied.stderr}`);
  }
  t.regex((await ctl(['get', 'ippool', '-o', 'wide'])).stdout, /racks\s+10\.97\.0\.0\/16\s+false\s+Never\s+CrossSubnet/);
});

test('calicoctl - messages a newcomer meets: no datastore configured says the three ways to name one; a selector missing its ")" says so', async (t) => {
  // Nothing names a datastore (no flags, no ETCD_*, no config file): the default does not answer.
  const bare = await new Promise<{ code: number; stderr: string }>((done) => {
    execFile(resolve('dist/bin/calicoctl'), ['--config', join(dir, 'none.cfg'), 'get', 'ippool'], { env: { PATH: process.env.PATH, ETCD_TIMEOUT_MS: '1000' } }, (err, _stdout, stderr) => done({ code: err ? 1 : 0, stderr }));
  });
  t.is(bare.code, 1);
  t.regex(bare.stderr, /config file .*none\.cfg does not exist/, 'a config file named and missing is said first');
  const unset = await new Promise<{ code: number; stderr: string }>((done) => {
    execFile(resolve('dist/bin/calicoctl'), ['get', 'ippool'], { env: { PATH: process.env.PATH, ETCD_TIMEOUT_MS: '1000' } }, (err, _stdout, stderr) => done({ code: err ? 1 : 0, stderr }));
  });
  t.is(unset.code, 1);
  t.regex(unset.stderr, /No datastore is configured/);
  for (const way of [/--etcd-endpoints/, /ETCD_ENDPOINTS/, /\/etc\/calico\/calicoctl\.cfg/, /kind: CalicoAPIConfig/]) t.regex(unset.stderr, way);
  t.notRegex(unset.stderr, /Resolution note: *$/m, 'no empty note from gRPC');

  const ctl = await ctlFor('messages');
  const open = await ctl(['apply', '-f', '-'], 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: open}\nspec: {selector: has(pcn.calico}\n');
  t.not(open.code, 0);
  t.regex(open.stderr, /spec\.selector: invalid selector "has\(pcn\.calico": expected "\)" to close has\(pcn\.calico, found the end at position 14/);
});

test('calicoctl - a policy without types gets Calico\'s default, written and shown; one written past calicoctl is shown with it too', async (t) => {
  const ctl = await ctlFor('types');
  const documents = [
    ['ingress-only', 'ingress: [{action: Allow}]', ['Ingress']],
    ['egress-only', 'egress: [{action: Allow}]', ['Egress']],
    ['both', 'ingress: [{action: Allow}]\n  egress: [{action: Allow}]', ['Ingress', 'Egress']],
    ['neither', 'order: 1', ['Ingress']],
  ] as const;
  for (const [name, rules, types] of documents) {
    const applied = await ctl(['apply', '-f', '-'], `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: ${name}}\nspec:\n  selector: all()\n  ${rules}\n`);
    t.is(applied.code, 0, applied.stderr);
    t.deepEqual((await ctl.ds.resources.get('GlobalNetworkPolicy', name))?.spec.types, types, `${name}: the defaulted types are written`);
  }
  await ctl.ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'raw' }, spec: { selector: 'all()', egress: [{ action: 'Allow' }] } });
  const wide = (await ctl(['get', 'gnp', '-o', 'wide'])).stdout;
  t.regex(wide, /^both\s.*Ingress,Egress$/m);
  t.regex(wide, /^raw\s.*Egress$/m, 'written past calicoctl: shown with the default');
  t.regex(wide, /^neither\s+1\s.*Ingress$/m);
});
