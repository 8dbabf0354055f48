import test from 'ava';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Entry } from '../../shared/datastore';
import { casConflicts, malformedRecords } from '../../shared/diagnostics';
import { Ipam } from '../../shared/ipam/ipam';
import { formatAddress, parseAddress } from '../../shared/net/address';
import { cidrContains, formatCidr, parseCidr } from '../../shared/net/cidr';
import { useEtcd } from '../helpers/etcd-hooks';
import { etcdKvCalls } from '../helpers/etcd-calls';
import { IpamEnv } from '../helpers/ipam-env';
import { readIpamState } from '../helpers/ipam-state';

const envs: IpamEnv[] = [];
const server = useEtcd(test, envs);

async function setup(label: string, pools: [string, string, number?][] = [['pool4', '10.20.0.0/16'], ['pool6', 'fd00:20::/64']]) {
  const env = new IpamEnv(server.etcd, label);
  envs.push(env);
  const ipam = await env.ipam();
  for (const [name, cidr, blockSize] of pools) await ipam.createPool(name, { cidr, ...(blockSize ? { blockSize } : {}) });
  return { env, ipam, ds: await env.datastore() };
}

const texts = (a: { version: 4 | 6; value: bigint }[]) => a.map(formatAddress);

test('ipam - auto-assigns IPv4 and IPv6 from a block affine to the host, one handle', async (t) => {
  const { ipam, ds } = await setup('basic');
  const got = await ipam.autoAssign({ handle: 'net1.c1', node: 'host-a', num4: 2, num6: 1, attributes: { container: 'c1' } });
  t.is(got.ipv4.length, 2);
  t.is(got.ipv6.length, 1);
  const state = await readIpamState(ds);
  t.deepEqual(state.problems, []);
  t.deepEqual(state.affinities.map((a) => [a.host, a.state]), [['host-a', 'confirmed'], ['host-a', 'confirmed']]);
  t.true(state.blocks.every((b) => b.affinity === 'host:host-a'));
  t.deepEqual(Object.values(state.handles.get('net1.c1')!).reduce((a, b) => a + b, 0), 3);
  const owner = await ipam.ownerOf(got.ipv6[0]!);
  t.is(owner?.handle, 'net1.c1');
  t.is(owner?.attributes.container, 'c1');
  t.is(owner?.attributes.node, 'host-a');
  t.regex(formatCidr(owner!.block), /^fd00:20::.*\/122$/);
});

test('ipam - a companion record lands in the allocation\'s own transaction; one whose key is not as expected, or that cannot be made, leaves its allocation to go ahead without it, alone in its batch', async (t) => {
  const { ipam, ds } = await setup('companion');
  const key = (name: string) => `${ds.keys.prefix}/companion-test/${name}`;
  const companion = (name: string) => (addresses: readonly { version: 4 | 6; value: bigint }[]) => ({ key: key(name), put: texts([...addresses]).join(','), expect: { absent: true } as const });
  // Taken: its key exists, so "absent" does not hold.
  await ds.kv.txn([{ key: key('taken'), put: 'someone else\'s' }]);
  // Requests that arrive while a batch is written share the next (group commit): taken's with b's.
  const broken = () => {
    throw new Error('this record cannot be made');
  };
  const [a, taken, b, unmade] = await Promise.all(['a', 'taken', 'b', 'unmade'].map((name) => ipam.autoAssign({ handle: `n.${name}`, node: 'h', num4: 1, num6: 1, companion: name === 'unmade' ? broken : companion(name) })));
  for (const [name, got] of [['a', a!], ['b', b!]] as const) {
    t.true(got.companionWritten, `${name}: written with its addresses`);
    const record = await ds.kv.get(key(name));
    t.is(record?.value, texts([...got.ipv4, ...got.ipv6]).join(','), `${name}: made from the addresses it got`);
    t.is(record?.modRevision, (await ds.kv.get(ds.keys.handle(`n.${name}`)))?.modRevision, `${name}: in the allocation's transaction`);
  }
  t.false(taken!.companionWritten, 'the taken key is not overwritten');
  t.is(taken!.ipv4.length + taken!.ipv6.length, 2, 'and its request still gets its addresses');
  t.is((await ds.kv.get(key('taken')))?.value, 'someone else\'s');
  t.false(unmade!.companionWritten, 'a companion that cannot be made fails nobody else\'s allocation');
  t.is(unmade!.ipv4.length, 1);
  t.is(new Set(texts([...a!.ipv4, ...taken!.ipv4, ...b!.ipv4, ...unmade!.ipv4])).size, 4);
  t.deepEqual((await readIpamState(ds)).problems, []);
});

// Serial, so that nothing else asks this file's etcd meanwhile: its call counts are the release's.
test.serial('ipam - a release deletes its companion record in its own transaction where the owner test accepts it; another\'s stays; one it cannot judge is left to its caller', async (t) => {
  const { ipam, ds } = await setup('release-companion');
  const key = (name: string) => `${ds.keys.prefix}/companion-test/${name}`;
  const ownedBy = (name: string) => ({ key: key(name), owns: (entry: Entry) => entry.value === `owner ${name}` });
  const names = ['mine', 'theirs', 'unjudged', 'none'];
  for (const name of names) await ipam.autoAssign({ handle: `n.${name}`, node: 'h', num4: 1, num6: 0 });
  await ds.kv.txn([{ key: key('mine'), put: 'owner mine' }, { key: key('theirs'), put: 'owner someone' }, { key: key('unjudged'), put: '{garbage' }]);
  const unjudged = { key: key('unjudged'), owns: (): boolean => {
    throw new Error('this record cannot be read');
  } };
  const mine = await ipam.releaseHandle('n.mine', { companion: ownedBy('mine') });
  t.is(mine.companion, 'deleted');
  t.is(await ds.kv.get(key('mine')), undefined);
  // The record went at the revision its address was freed, not before or after.
  const block = (await ds.kv.list(ds.keys.blockPrefix(4)))[0]!;
  const at = async (revision: bigint) => (await ds.kv.list(key('mine'), { revision: String(revision) })).length;
  t.is(await at(BigInt(block.modRevision) - 1n), 1);
  t.is(await at(BigInt(block.modRevision)), 0);
  // Submitted together: one batch, one transaction.
  const [theirs, unjudgedOutcome, none] = await Promise.all(names.slice(1).map((name) => ipam.releaseHandle(`n.${name}`, { companion: name === 'unjudged' ? unjudged : ownedBy(name) })));
  t.deepEqual([mine, theirs, unjudgedOutcome, none].map((r) => r!.released.length), [1, 1, 1, 1], 'every address is released whatever its record');
  t.is(theirs!.companion, 'not ours');
  t.is((await ds.kv.get(key('theirs')))?.value, 'owner someone');
  t.is(unjudgedOutcome!.companion, undefined, 'left to the caller, which says why');
  t.is((await ds.kv.get(key('unjudged')))?.value, '{garbage');
  t.is(none!.companion, 'absent');
  const state = await readIpamState(ds);
  t.is(state.allocated.size, 0);
  t.is(state.handles.size, 0);
});

test.serial('ipam - a release reads nothing first: one round trip for what the client itself allocated; a client that knows nothing reads only the blocks its first transaction named; a record changed behind its back is judged as it is', async (t) => {
  const { env, ds } = await setup('release-memory');
  const mineDs = await env.datastore();
  const ipam = new Ipam(mineDs);
  const key = (name: string) => `${ds.keys.prefix}/companion-test/${name}`;
  const record = (name: string, owner: string) => () => ({ key: key(name), put: `owner ${owner}`, expect: { absent: true } as const });
  const ownedBy = (name: string) => ({ key: key(name), owns: (entry: Entry) => entry.value === `owner ${name}` });
  const calls = () => etcdKvCalls(server.etcd.endpoint);
  const conflicts: unknown[] = [];
  const onConflict = (message: unknown) => conflicts.push(message);
  subscribe(casConflicts.name, onConflict);
  t.teardown(() => unsubscribe(casConflicts.name, onConflict));

  for (const name of ['warm', 'stale', 'grown']) t.true((await ipam.autoAssign({ handle: `n.${name}`, node: 'h', num4: 1, num6: 1, companion: record(name, name) })).companionWritten);
  let before = await calls();
  const warm = await ipam.releaseHandle('n.warm', { companion: ownedBy('warm') });
  t.is(await calls() - before, 1, 'what this client wrote at the allocation needs no read: one transaction');
  t.deepEqual([warm.released.length, warm.companion], [2, 'deleted']);

  // Another client, which knows nothing of it: its first transaction fails and brings the handle's
  // and the record's values; it reads the blocks the handle names, then writes.
  const stranger = new Ipam(await env.datastore());
  await ipam.autoAssign({ handle: 'n.cold', node: 'h', num4: 1, num6: 0, companion: record('cold', 'cold') });
  before = await calls();
  const cold = await stranger.releaseHandle('n.cold', { companion: ownedBy('cold') });
  t.is(await calls() - before, 3);
  t.deepEqual([cold.released.length, cold.companion], [1, 'deleted']);
  t.deepEqual(conflicts, [], 'learning what it did not know is no conflict');

  // Behind the client's back: its record now names another owner; its handle got another address.
  await ds.kv.txn([{ key: key('stale'), put: 'owner someone' }]);
  const extra = await stranger.autoAssign({ handle: 'n.grown', node: 'h', num4: 1, num6: 0 });
  const [stale, grown] = await Promise.all([ipam.releaseHandle('n.stale', { companion: ownedBy('stale') }), ipam.releaseHandle('n.grown', { companion: ownedBy('grown') })]);
  t.deepEqual([stale.released.length, stale.companion], [2, 'not ours'], 'the record as it is now is judged, and stays');
  t.is((await ds.kv.get(key('stale')))?.value, 'owner someone');
  t.deepEqual([grown.released.length, grown.companion], [3, 'deleted'], 'the address the other client added is released too');
  t.true(texts(grown.released).includes(formatAddress(extra.ipv4[0]!)));
  const state = await readIpamState(ds);
  t.is(state.allocated.size, 0);
  t.is(state.handles.size, 0);
  t.deepEqual(state.problems, []);
});

test('ipam - a second allocation on the host uses the same block', async (t) => {
  const { ipam, ds } = await setup('same-block');
  const a = await ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 1, num6: 0 });
  const b = await ipam.autoAssign({ handle: 'n.b', node: 'h', num4: 1, num6: 0 });
  const { blocks } = await readIpamState(ds);
  t.is(blocks.length, 1);
  t.not(formatAddress(a.ipv4[0]!), formatAddress(b.ipv4[0]!));
  t.is(blocks[0]!.inUse, 2);
});

test('ipam - release by address and by handle leave no allocation or handle', async (t) => {
  const { ipam, ds } = await setup('release');
  const a = await ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 3, num6: 2 });
  const { notAllocated, notOwned } = await ipam.release([a.ipv4[0]!, a.ipv4[1]!, parseAddress('10.20.99.1'), parseAddress('192.0.2.1')], (attr) => attr.handle_id === 'n.a');
  t.deepEqual(texts(notAllocated).sort(), ['10.20.99.1', '192.0.2.1']);
  t.deepEqual(notOwned, []);
  const other = await ipam.release([a.ipv4[2]!], (attr) => attr.handle_id === 'someone.else');
  t.deepEqual(texts(other.notOwned), [formatAddress(a.ipv4[2]!)], 'an address of another owner is left alone');
  t.is(await ipam.releaseByHandle('n.a'), 3);
  t.is(await ipam.releaseByHandle('n.a'), 0, 'releasing again is a no-op');
  t.is(await ipam.releaseByHandle('never.existed'), 0);
  const state = await readIpamState(ds);
  t.is(state.allocated.size, 0);
  t.is(state.handles.size, 0);
  t.deepEqual(state.problems, []);
  t.is(state.blocks.length, 2, 'emptied blocks stay affine until asked');
  const released = await ipam.releaseEmptyBlocks('h');
  t.is(released.length, 2);
  const after = await readIpamState(ds);
  t.is(after.blocks.length, 0);
  t.is(after.affinities.length, 0);
});

test('ipam - assigning a specific address, refusing one in use or outside every pool', async (t) => {
  const { ipam, ds } = await setup('specific');
  await ipam.assign({ address: parseAddress('10.20.7.7'), handle: 'n.x', node: 'h' });
  t.is((await ipam.ownerOf(parseAddress('10.20.7.7')))?.handle, 'n.x');
  const inUse = await t.throwsAsync(ipam.assign({ address: parseAddress('10.20.7.7'), handle: 'n.y', node: 'h' }));
  t.regex(inUse!.message, /10\.20\.7\.7 is already in use \(handle "n\.x"\)/);
  const outside = await t.throwsAsync(ipam.assign({ address: parseAddress('10.99.0.1'), handle: 'n.y', node: 'h' }));
  t.regex(outside!.message, /10\.99\.0\.1 is not in any enabled IP pool/);
  const state = await readIpamState(ds);
  t.deepEqual([...state.allocated.keys()], ['10.20.7.7']);
  t.is(state.handles.size, 1);
  t.deepEqual(state.problems, []);
  // The next automatic address comes from the same host block.
  const next = await ipam.autoAssign({ handle: 'n.z', node: 'h', num4: 1, num6: 0 });
  t.is(formatAddress(next.ipv4[0]!), '10.20.7.0');
});

test('ipam - a full pool says which pools are full; nothing is leaked', async (t) => {
  const { ipam, ds } = await setup('full', [['tiny', '10.30.0.0/29', 29], ['v6', 'fd00:30::/122']]);
  const six = await ipam.autoAssign({ handle: 'n.a', node: 'h1', num4: 6, num6: 0 });
  t.deepEqual(texts(six.ipv4), ['10.30.0.1', '10.30.0.2', '10.30.0.3', '10.30.0.4', '10.30.0.5', '10.30.0.6'], 'a /29 pool gives 6: never its network or broadcast address');
  const err = await t.throwsAsync(ipam.autoAssign({ handle: 'n.b', node: 'h1', num4: 1, num6: 1 }), { code: 'IPAM_POOLS_EXHAUSTED' } as never);
  t.regex(err!.message, /no free address in pool\(s\) tiny \(10\.30\.0\.0\/29\)/);
  const partial = await t.throwsAsync(ipam.autoAssign({ handle: 'n.c', node: 'h1', num4: 0, num6: 65 }), { code: 'IPAM_POOLS_EXHAUSTED' } as never);
  t.truthy(partial);
  const state = await readIpamState(ds);
  t.is(state.handles.has('n.b'), false);
  t.is(state.handles.has('n.c'), false, 'a failed request gives back what it had taken');
  t.is(state.allocated.size, 6);
  t.deepEqual(state.problems, []);
});

test('ipam - no pools, disabled pools and unknown pools are clear errors', async (t) => {
  const { ipam } = await setup('nopool', [['only4', '10.40.0.0/24']]);
  await t.throwsAsync(ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 0, num6: 1 }), { message: /no enabled IPv6 pool/ });
  await t.throwsAsync(ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 1, num6: 0, pools4: ['nope'] }), { message: /pool "nope" does not exist/ });
  await t.throwsAsync(ipam.autoAssign({ handle: 'bad/handle', node: 'h', num4: 1, num6: 0 }), { message: /invalid handle/ });
  await t.throwsAsync(ipam.autoAssign({ handle: 'n.a', node: 'bad host', num4: 1, num6: 0 }), { message: /invalid node/ });
  await t.throwsAsync(ipam.createPool('clash', { cidr: '10.40.0.0/25' }), { message: /overlaps pool only4/ });
  await t.throwsAsync(ipam.createPool('only4', { cidr: '10.41.0.0/24' }), { message: /already exists/ });
});

test('ipam - pools restricted by name; other hosts borrow only without strict affinity', async (t) => {
  const { ipam, ds } = await setup('borrow', [['small', '10.50.0.0/26', 26], ['other', '10.51.0.0/26', 26]]);
  const first = await ipam.autoAssign({ handle: 'n.a', node: 'h1', num4: 1, num6: 0, pools4: ['small'] });
  t.is(formatAddress(first.ipv4[0]!), '10.50.0.1', 'the pool\'s network address is never handed out');
  // h2 can claim no block of 'small' (its only block is h1's): it borrows.
  const borrowed = await ipam.autoAssign({ handle: 'n.b', node: 'h2', num4: 1, num6: 0, pools4: ['small'] });
  t.is(formatAddress(borrowed.ipv4[0]!), '10.50.0.2');
  await ipam.setConfig({ strict_affinity: true, auto_allocate_blocks: true, maxBlocksPerHost: 0 });
  const err = await t.throwsAsync(ipam.autoAssign({ handle: 'n.c', node: 'h2', num4: 1, num6: 0, pools4: ['small'] }));
  t.regex(err!.message, /strict affinity forbids borrowing/);
  t.deepEqual((await readIpamState(ds)).problems, []);
});

test('ipam - maxBlocksPerHost and auto_allocate_blocks are honoured', async (t) => {
  const { ipam } = await setup('maxblocks', [['p', 'fd00:60::/120', 126]]);
  await ipam.setConfig({ strict_affinity: true, auto_allocate_blocks: true, maxBlocksPerHost: 2 });
  const got = await ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 0, num6: 8 });
  t.is(got.ipv6.length, 8);
  const err = await t.throwsAsync(ipam.autoAssign({ handle: 'n.b', node: 'h', num4: 0, num6: 1 }));
  t.regex(err!.message, /maxBlocksPerHost \(2\)/);
  await ipam.setConfig({ strict_affinity: true, auto_allocate_blocks: false, maxBlocksPerHost: 0 });
  await t.throwsAsync(ipam.autoAssign({ handle: 'n.b', node: 'other', num4: 0, num6: 1 }), { message: /auto_allocate_blocks is off/ });
});

test('ipam - a disabled pool gives no new addresses', async (t) => {
  const { ipam, ds } = await setup('disabled', [['p', '10.70.0.0/24']]);
  const pool = await ds.resources.get('IPPool', 'p');
  await ds.resources.update({ ...pool!, spec: { ...pool!.spec, disabled: true } });
  await t.throwsAsync(ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 1, num6: 0 }), { message: /no enabled IPv4 pool/ });
});

test('ipam - a cached host view notices a pool disabled by someone else', async (t) => {
  const { ipam, ds } = await setup('stale', [['p', '10.71.0.0/24'], ['q', '10.72.0.0/24']]);
  const first = await ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 1, num6: 0 });
  const usedPool = formatAddress(first.ipv4[0]!).startsWith('10.71.') ? 'p' : 'q';
  const pool = await ds.resources.get('IPPool', usedPool);
  await ds.resources.update({ ...pool!, spec: { ...pool!.spec, disabled: true } });
  const second = await ipam.autoAssign({ handle: 'n.b', node: 'h', num4: 1, num6: 0 });
  t.false(formatAddress(second.ipv4[0]!).startsWith(usedPool === 'p' ? '10.71.' : '10.72.'), 'the disabled pool is not used');
});

test('ipam - a malformed block of the host is skipped alone, told with its key and field: allocation goes on in another block, never in it', async (t) => {
  const { ipam, ds } = await setup('malformed', [['p', '10.80.0.0/24']]);
  await ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 1, num6: 0 });
  const [block] = await ds.kv.list(ds.keys.blockPrefix(4));
  const cidr = ds.keys.blockCidrOf(block!.key)!;
  await ds.kv.txn([{ key: block!.key, put: JSON.stringify({ cidr: formatCidr(cidr), allocations: 'lots' }) }]);
  const told: { key: string; error: string }[] = [];
  const listen = (message: unknown) => told.push(message as { key: string; error: string });
  subscribe(malformedRecords.name, listen);
  t.teardown(() => unsubscribe(malformedRecords.name, listen));
  const fresh = await (await new IpamEnvFor(ds).ipam());
  const got = await fresh.autoAssign({ handle: 'n.b', node: 'h', num4: 1, num6: 0 });
  t.false(cidrContains(cidr, got.ipv4[0]!), 'nothing from the block that cannot be read');
  t.true(told.some((m) => m.key === block!.key && /field "\w+" must be an array/.test(m.error)), JSON.stringify(told));
});

test('ipam - an interrupted claim (pending affinity, no block) is finished by the next claim', async (t) => {
  const { ipam, ds } = await setup('pending', [['p', '10.90.0.0/24']]);
  const cidr = parseCidr('10.90.0.128/26');
  await ds.kv.txn([{ key: ds.keys.affinity('h', cidr), put: '{"state":"pending","deleted":false}' }]);
  const got = await ipam.autoAssign({ handle: 'n.a', node: 'h', num4: 1, num6: 0 });
  t.is(formatAddress(got.ipv4[0]!), '10.90.0.128');
  const state = await readIpamState(ds);
  t.deepEqual(state.affinities, [{ host: 'h', cidr: '10.90.0.128/26', state: 'confirmed' }]);
  t.deepEqual(state.problems, []);
});

/** A fresh Ipam (empty caches) over an existing datastore connection. */
class IpamEnvFor {
  constructor(private readonly ds: import('../../shared/datastore').Datastore) {}
  async ipam() {
    const { Ipam } = await import('../../shared/ipam/ipam');
    return new Ipam(this.ds);
  }
}

test('ipam - a pool whose every block is held empty by other hosts is not exhausted: one is taken back; a host keeps one spare', async (t) => {
  const { ipam, ds } = await setup('reclaim', [['tiny', '10.70.0.0/24', 26]]);
  await ipam.setConfig({ strict_affinity: true, auto_allocate_blocks: true, maxBlocksPerHost: 0 });
  // Four hosts each claim one of the pool's four blocks, then give their addresses back.
  for (const host of ['h1', 'h2', 'h3', 'h4']) {
    const got = await ipam.autoAssign({ handle: `n.${host}`, node: host, num4: 1, num6: 0 });
    await ipam.release(got.ipv4, () => true);
  }
  t.is((await readIpamState(ds)).blocks.length, 4);
  const got = await ipam.autoAssign({ handle: 'n.new', node: 'h5', num4: 1, num6: 0 });
  t.is(got.ipv4.length, 1, 'a fifth host gets an address though strict affinity forbids borrowing');
  const state = await readIpamState(ds);
  t.is(state.blocks.length, 4);
  t.is(state.blocks.filter((b) => b.affinity === 'host:h5').length, 1, 'it took back an empty block');
  t.deepEqual(state.problems, [], 'block and affinity went together');

  // Three of h1..h4 still hold an empty block each: released but `keep` of them, only for the host asked.
  const holder = state.blocks.find((b) => b.affinity !== 'host:h5')!.affinity!.slice('host:'.length);
  t.deepEqual((await ipam.releaseEmptyBlocks(holder, 1)).length, 0, 'the spare stays');
  t.is((await ipam.releaseEmptyBlocks(holder, 0)).length, 1);
  t.is((await readIpamState(ds)).blocks.length, 3, 'the other hosts\' blocks are theirs still');
  t.is((await ipam.emptyBlocks('h5')).length, 0, 'a block in use is never released');
  t.false(await ipam.releaseEmptyBlock('h5', parseCidr(state.blocks.find((b) => b.affinity === 'host:h5')!.cidr)));
});
