import test from 'ava';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { Datastore, etcdSettingsFrom, type EtcdSettings } from '../../shared/datastore';
import { EtcdServer, uniquePrefix } from '../../sim/etcd';
import { waitFor } from '../../sim/wait';
import { etcdWatchStreams } from '../helpers/etcd-calls';
import { useEtcd } from '../helpers/etcd-hooks';
import { makePki } from '../helpers/tls';

const clients: Datastore[] = [];
const setup = useEtcd(test, clients);

async function connect(overrides: Partial<EtcdSettings> = {}): Promise<Datastore> {
  const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: setup.etcd.endpoint }, {}), prefix: uniquePrefix('ds'), ...overrides });
  clients.push(ds);
  return ds;
}

test('datastore - resources round-trip in the Calico v3 layout', async (t) => {
  const ds = await connect();
  const created = await ds.resources.create({ kind: 'Profile', apiVersion: 'projectcalico.org/v3', metadata: { name: 'net1' }, spec: { labelsToApply: { net1: '' } } });
  t.regex(created.metadata.uid!, /^[0-9a-f-]{36}$/);
  t.regex(created.metadata.creationTimestamp!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const raw = JSON.parse((await ds.kv.get(`${ds.keys.prefix}/resources/v3/projectcalico.org/profiles/net1`))!.value);
  t.is(raw.kind, 'Profile');
  t.is(raw.apiVersion, 'projectcalico.org/v3');
  t.is(raw.metadata.resourceVersion, undefined, 'resourceVersion is not stored');
  const read = await ds.resources.get('Profile', 'net1');
  t.is(read!.metadata.resourceVersion, created.metadata.resourceVersion);
  t.deepEqual(read!.spec, { labelsToApply: { net1: '' } });
  t.is((await ds.resources.list('Profile')).length, 1);
});

test('datastore - create, update and delete are compare-and-swap', async (t) => {
  const ds = await connect();
  const node = { kind: 'Node' as const, apiVersion: 'projectcalico.org/v3' as const, metadata: { name: 'h1' }, spec: {} };
  const first = await ds.resources.create(node);
  await t.throwsAsync(ds.resources.create(node), { code: 'DATASTORE_ALREADY_EXISTS' } as never);
  const updated = await ds.resources.update({ ...first, spec: { bgp: { ipv4Address: '10.0.0.1/24' } } });
  await t.throwsAsync(ds.resources.update({ ...first, spec: {} }), { code: 'DATASTORE_CONFLICT' } as never, 'a stale revision loses');
  await t.throwsAsync(ds.resources.delete('Node', 'h1', undefined, first.metadata.resourceVersion), { code: 'DATASTORE_CONFLICT' } as never);
  t.true(await ds.resources.delete('Node', 'h1', undefined, updated.metadata.resourceVersion));
  t.false(await ds.resources.delete('Node', 'h1'));
  await t.throwsAsync(ds.resources.update(updated), { code: 'DATASTORE_NOT_FOUND' } as never);
});

test('datastore - a multi-key transaction applies all or nothing', async (t) => {
  const ds = await connect();
  const a = `${ds.keys.prefix}/x/a`;
  const b = `${ds.keys.prefix}/x/b`;
  t.true((await ds.kv.txn([{ key: a, put: '1', expect: { absent: true } }])).ok);
  const failed = await ds.kv.txn([
    { key: b, put: '2', expect: { absent: true } },
    { key: a, put: '3', expect: { absent: true } },
  ]);
  t.false(failed.ok);
  if (!failed.ok) t.is(failed.current.get(a)?.value, '1', 'the failure carries the current values');
  t.is(await ds.kv.get(b), undefined);
});

test('datastore - a transaction sent again after it was applied (its answer lost) is known as applied, not as a lost race', async (t) => {
  const ds = await connect();
  const block = `${ds.keys.prefix}/x/block`;
  const handle = `${ds.keys.prefix}/x/handle`;
  const old = `${ds.keys.prefix}/x/old`;
  await ds.kv.txn([{ key: block, put: 'empty' }, { key: old, put: 'stale' }]);
  const read = (await ds.kv.get(block))!;
  // What a client resends to another member when the first commits and dies before answering.
  const allocation = [
    { key: block, put: 'one address, handle h', expect: { modRevision: read.modRevision } },
    { key: handle, put: 'h: 1', expect: { absent: true } },
    { key: old, delete: true },
  ] as const;
  const first = await ds.kv.txn(allocation);
  t.true(first.ok);
  const again = await ds.kv.txn(allocation);
  t.deepEqual(again, first, 'sent again at once: applied at the first revision');

  await ds.kv.txn([{ key: block, put: 'two addresses, handles h and k' }]);
  const later = await ds.kv.txn(allocation);
  t.deepEqual(later, first, 'sent again after another write to the block: still applied, read back at its revision');

  const race = await ds.kv.txn([
    { key: block, put: 'one address, handle m', expect: { modRevision: read.modRevision } },
    { key: `${ds.keys.prefix}/x/m`, put: 'm: 1', expect: { absent: true } },
  ]);
  t.false(race.ok, 'a write that never landed is a lost race');
});

test('datastore - malformed JSON in etcd is an error naming the key', async (t) => {
  const ds = await connect();
  const key = ds.resources.keyOf('Profile', 'broken');
  await ds.kv.txn([{ key, put: '{"kind":"Profile",' }]);
  const err = await t.throwsAsync(ds.resources.get('Profile', 'broken'), { code: 'DATASTORE_MALFORMED' } as never);
  t.true(err!.message.includes(key));
  await ds.kv.txn([{ key, put: '{"kind":"Profile","metadata":{"name":"broken"},"spec":[]}' }]);
  t.regex((await t.throwsAsync(ds.resources.get('Profile', 'broken')))!.message, /field "spec" must be an object/);
});

test('datastore - watch follows puts and deletes under a prefix', async (t) => {
  const ds = await connect();
  const seen: string[] = [];
  const watch = await ds.kv.watchPrefix(`${ds.keys.prefix}/w/`, (e) => seen.push(`${e.type} ${e.key.split('/').pop()}`));
  await ds.kv.txn([{ key: `${ds.keys.prefix}/w/one`, put: '1' }]);
  await ds.kv.txn([{ key: `${ds.keys.prefix}/w/one`, delete: true }]);
  for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  await watch.close();
  t.deepEqual(seen, ['put one', 'delete one']);
});

test.serial('datastore - a watch is one stream for as long as it lasts: the deadline of calls does not end it', async (t) => {
  // A stream ended by each call's deadline was opened again every few seconds by every daemon.
  const ds = await connect({ timeoutMs: 300 });
  const before = await etcdWatchStreams(setup.etcd.endpoint);
  const seen: string[] = [];
  const watch = await ds.kv.watchPrefix(`${ds.keys.prefix}/`, (e) => seen.push(e.key));
  for (let i = 0; i < 5; i++) {
    await sleep(400);
    await ds.kv.txn([{ key: `${ds.keys.prefix}/k${i}`, put: 'x' }]);
  }
  await waitFor('the five events', async () => seen.length === 5, 5000, 50);
  t.is(await etcdWatchStreams(setup.etcd.endpoint) - before, 1, 'one stream, 2 s past a 300 ms deadline');
  await watch.close();
});

test('datastore - a refused endpoint fails fast, naming it', async (t) => {
  const ds = await connect({ endpoints: ['http://127.0.0.1:1'], timeoutMs: 2000 });
  const started = Date.now();
  const err = await t.throwsAsync(ds.kv.get('/k'), { code: 'DATASTORE_UNAVAILABLE' } as never);
  t.true(err!.message.includes('http://127.0.0.1:1'));
  t.true(Date.now() - started < 2500);
});

test('datastore - two dead members beside a live one: a fresh client\'s first reads (ours and the library\'s) and write each reach the live one', async (t) => {
  // Each call tries every member once; a retry that picked its member afresh found a dead one
  // three times in a row for about one fresh client's first read in four here.
  const dead = ['a', 'b'].map((name) => `unix:///tmp/etcd-dead-member-${process.pid}-${name}.sock:0`);
  const prefix = uniquePrefix('dead-members');
  for (let i = 0; i < 20; i++) {
    const ds = await connect({ endpoints: [...dead, setup.etcd.endpoint], prefix, timeoutMs: 2000 });
    const key = `${ds.keys.prefix}/k${i}`;
    t.is((await ds.kv.list(`${ds.keys.prefix}/`)).length, i, `scan ${i}`);
    t.true((await ds.kv.txn([{ key, put: `${i}`, expect: { absent: true } }])).ok, `write ${i}`);
    t.is((await ds.kv.get(key))?.value, `${i}`, `get ${i}`);
    ds.close();
  }
});

test('datastore - an endpoint that never answers hits the deadline, naming it', async (t) => {
  // A local listener that accepts and then says nothing: what a dropped packet looks like to the client.
  const sockets = new Set<Socket>();
  const silent: Server = createServer((socket) => sockets.add(socket));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
  const ds = await connect({ endpoints: [endpoint], timeoutMs: 600 });
  const started = Date.now();
  const err = await t.throwsAsync(ds.kv.get('/k'), { code: 'DATASTORE_UNAVAILABLE' } as never);
  t.true(err!.message.includes(endpoint));
  t.true(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  ds.close();
  for (const socket of sockets) socket.destroy();
  silent.close();
});

test('datastore - TLS with client certificates', async (t) => {
  const pki = makePki();
  const secure = await EtcdServer.start({ tls: { caFile: pki.caFile, certFile: pki.serverCert, keyFile: pki.serverKey } });
  t.teardown(async () => {
    await secure.destroy();
    rmSync(pki.dir, { recursive: true, force: true });
  });
  const settings = etcdSettingsFrom(
    { etcd_endpoints: secure.endpoint },
    { ETCD_CA_CERT_FILE: pki.caFile, ETCD_CERT_FILE: pki.clientCert, ETCD_KEY_FILE: pki.clientKey },
  );
  const ds = await Datastore.connect({ ...settings, prefix: uniquePrefix('tls') });
  clients.push(ds);
  await ds.kv.txn([{ key: `${ds.keys.prefix}/tls`, put: 'yes' }]);
  t.is((await ds.kv.get(`${ds.keys.prefix}/tls`))?.value, 'yes');

  const noClientCert = await Datastore.connect({ ...settings, certFile: undefined, keyFile: undefined, timeoutMs: 1500 });
  clients.push(noClientCert);
  const err = await t.throwsAsync(noClientCert.kv.get('/x'));
  t.true(err!.message.includes(secure.endpoint));

  await t.throwsAsync(Datastore.connect({ ...settings, caCertFile: '/nonexistent/ca.pem' }), { message: /etcd_ca_cert_file.*\/nonexistent\/ca\.pem/ });
});

test('datastore - an expired auth token is renewed: scans (our own range reads) as well as the library\'s calls', async (t) => {
  const secured = await EtcdServer.start({ flags: ['--auth-token-ttl', '1'] });
  t.teardown(() => secured.destroy());
  const etcdctl = (...args: string[]) => execFileSync('etcdctl', ['--endpoints', secured.endpoint, ...args], { stdio: 'pipe' });
  etcdctl('user', 'add', 'root', '--new-user-password=root-secret');
  etcdctl('auth', 'enable');
  t.throws(() => execFileSync('etcdctl', ['--endpoints', secured.endpoint, 'get', 'x'], { stdio: 'pipe' }), undefined, 'auth is on');
  const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: secured.endpoint, etcd_username: 'root', etcd_password: 'root-secret' }, {}), prefix: uniquePrefix('token') });
  clients.push(ds);
  await load(ds, Array.from({ length: 30 }, (_, i) => `${ds.keys.prefix}/k/${i}`), (key) => key);
  t.is((await ds.kv.list(`${ds.keys.prefix}/k/`)).length, 30);
  // The token lives a second past its last use.
  await sleep(2500);
  t.is((await ds.kv.list(`${ds.keys.prefix}/k/`, { pageSize: 7 })).length, 30);
  await sleep(2500);
  t.is((await ds.kv.get(`${ds.keys.prefix}/k/1`))?.value, `${ds.keys.prefix}/k/1`);
});

/** Loads `count` keys fast: transactions of 100 puts, several in flight (etcd allows 128 operations). */
async function load(ds: Datastore, keys: readonly string[], value: (key: string) => string): Promise<void> {
  const batches: string[][] = [];
  for (let i = 0; i < keys.length; i += 100) batches.push(keys.slice(i, i + 100));
  for (let i = 0; i < batches.length; i += 8) {
    await Promise.all(batches.slice(i, i + 8).map((batch) => ds.kv.txn(batch.map((key) => ({ key, put: value(key) })))));
  }
}

test('datastore - pages cross their boundaries without loss or duplicates, at one revision', async (t) => {
  const ds = await connect();
  const base = `${ds.keys.prefix}/paged/`;
  // Keys that share prefixes and sort tightly (a, a0, a00...), so a continuation key off by one byte would show.
  const keys = Array.from({ length: 1234 }, (_, i) => `${base}${'a'.repeat(1 + (i % 3))}${String(i).padStart(i % 5, '0')}`);
  await load(ds, keys, (k) => k);
  await ds.kv.txn([{ key: `${ds.keys.prefix}/paged0`, put: 'outside the prefix' }]);
  const seen: string[] = [];
  const sizes: number[] = [];
  for await (const page of ds.kv.pages(base, { pageSize: 97 })) {
    sizes.push(page.length);
    seen.push(...page.map((e) => e.key));
    // Written during the scan: not part of the snapshot the scan reads.
    if (sizes.length === 2) await ds.kv.txn([{ key: `${base}zz-late`, put: 'late' }, { key: keys[0]!, delete: true }]);
  }
  t.is(sizes[0], 97, 'the first page is as asked');
  t.true(sizes.length > 2, `several pages: ${sizes.join(', ')}`);
  t.true(sizes.length <= 20, 'a long scan takes few reads: etcd counts the rest of the range on each');
  t.deepEqual(seen, [...keys].sort(), 'every key once, in key order, as of the first page');
  t.is((await ds.kv.list(base, { keysOnly: true, pageSize: 10 })).length, 1234, 'the late put and the delete are seen by a new scan');
  const many = await ds.kv.readMany(keys.slice(0, 300).map((key) => ({ key })));
  t.is(many.length, 300, 'more reads than one transaction allows take several');
  t.deepEqual(many.slice(1).map((e) => e[0]?.value), keys.slice(1, 300));
  await t.throwsAsync(ds.kv.txn(keys.slice(0, 129).map((key) => ({ key, put: 'x' }))), { instanceOf: RangeError }, 'a transaction over etcd\'s limit is refused before it is sent');
});

test('datastore - a page too large for one message is read in smaller pages', async (t) => {
  const ds = await connect();
  const base = `${ds.keys.prefix}/large/`;
  const keys = Array.from({ length: 24 }, (_, i) => `${base}${String(i).padStart(2, '0')}`);
  const big = 'x'.repeat(1 << 20);
  for (const key of keys) await ds.kv.txn([{ key, put: big }]);
  const sizes: number[] = [];
  for await (const page of ds.kv.pages(base, { pageSize: 500 })) sizes.push(page.length);
  t.is(sizes.reduce((a, b) => a + b, 0), 24);
  t.true(sizes.length > 1, `24 MiB came in ${sizes.length} pages`);
});
