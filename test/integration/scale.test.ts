import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GarbageCollector } from '../../daemon/garbage-collector';
import { Datastore, etcdSettingsFrom } from '../../shared/datastore';
import { Ipam } from '../../shared/ipam/ipam';
import { silentLogger } from '../../shared/log';
import { runCalicoctl } from '../../sim/calicoctl';
import { uniquePrefix } from '../../sim/etcd';
import { loadScaleData, type ScaleData } from '../../sim/scale-data';
import { useEtcd } from '../helpers/etcd-hooks';

const clients: Datastore[] = [];
const server = useEtcd(test, clients);
const dir = mkdtempSync(join(tmpdir(), 'scale-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const HOSTS = 1000;
const ALLOCATIONS = 20_000;
const LEAKS = 20;

let prefix: string;
let ds: Datastore;
let data: ScaleData;

test.before(async () => {
  prefix = uniquePrefix('scale');
  ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: server.etcd.endpoint }, {}), prefix, timeoutMs: 30_000 });
  clients.push(ds);
  data = await loadScaleData(ds, { hosts: HOSTS, blocks: HOSTS, allocations: ALLOCATIONS, leaks: LEAKS, pool: '10.64.0.0/10' });
});

const ctl = (...args: string[]) => runCalicoctl(args, { ETCD_ENDPOINTS: server.etcd.endpoint, ETCD_PREFIX: prefix });

test.serial('scale - 1000 hosts and 20,000 workloads: every read command answers, in pages, with exactly what is there', async (t) => {
  // Far more than one etcd response of 4 MiB: blocks alone are some, endpoints many times that.
  const show = await ctl('ipam', 'show');
  t.is(show.code, 0, show.stderr);
  t.regex(show.stdout, new RegExp(`IP Pool\\s+10\\.64\\.0\\.0/10\\s+\\d+\\s+${ALLOCATIONS} `));

  const status = await ctl('node', 'status');
  t.is(status.code, 0, status.stderr);
  const rows = status.stdout.trim().split('\n').slice(1);
  t.is(rows.length, HOSTS, 'one row per host');
  const leakHosts = new Set(data.leaks.map((l) => l.host));
  for (const row of rows.slice(0, 50)) {
    const [name, address, blocks, inUse, endpoints] = row.split(/\s+/);
    t.regex(address!, /^172\.20\./);
    t.is(blocks, '1');
    t.is(inUse, String(ALLOCATIONS / HOSTS));
    t.is(Number(endpoints), ALLOCATIONS / HOSTS - data.leaks.filter((l) => l.host === name).length, `endpoints of ${name}`);
  }
  t.true(leakHosts.size > 1);

  const endpoints = await ctl('get', 'workloadendpoints', '-o', 'json');
  t.is(endpoints.code, 0, endpoints.stderr);
  const parsed = JSON.parse(endpoints.stdout) as { items: unknown[] };
  t.is(parsed.items.length, ALLOCATIONS - LEAKS);
  t.true(endpoints.stdout.length > 4 << 20, 'more than one gRPC message could carry');
});

test.serial('scale - ipam check finds exactly the planted leaks; the daemon\'s GC pass reads one host\'s keys and collects its own; release frees the rest', async (t) => {
  const report = join(dir, 'report.json');
  const check = await ctl('ipam', 'check', '-o', report);
  t.is(check.code, 1, 'leaks make a non-zero exit');
  const found = JSON.parse(readFileSync(report, 'utf8'));
  t.deepEqual(found.allocatedWithoutEndpoint.map((l: { address: string }) => l.address).sort(), data.leaks.map((l) => l.address).sort());
  t.is(found.summary.problems, LEAKS, 'and nothing else');
  t.is(found.summary.allocated, ALLOCATIONS);
  t.is(found.summary.endpoints, ALLOCATIONS - LEAKS);

  const leak = data.leaks[0]!;
  const ipam = new Ipam(ds);
  const gc = new GarbageCollector(async () => ({ ds, ipam }), undefined, { node: leak.host, intervalMs: 0, graceMs: 3_600_000 }, silentLogger);
  const cleaned = await gc.collect();
  t.true(cleaned.includes(`address ${leak.address}`), `collected ${cleaned.join(', ')}`);
  t.true(cleaned.every((c) => c === `address ${leak.address}` || !c.startsWith('address')), 'only its own host\'s leak');
  t.falsy(await ipam.ownerOf((await import('../../shared/net/address')).parseAddress(leak.address)));

  const refused = await ctl('ipam', 'release', '--from-report', report);
  t.is(refused.code, 1, 'the data changed since the report: nothing released');
  await ctl('ipam', 'check', '-o', report);
  const released = await ctl('ipam', 'release', '--from-report', report);
  t.regex(released.stdout, new RegExp(`Released ${LEAKS - 1} leaked address`));
  const clean = await ctl('ipam', 'check');
  t.is(clean.code, 0, clean.stdout);
});
