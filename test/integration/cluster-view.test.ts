import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ClusterView, type ClusterDelta } from '../../shared/cluster-view/cluster-view';
import { affinityId, type SectionKind, type ViewAffinity } from '../../shared/cluster-view/sections';
import { Datastore, etcdSettingsFrom } from '../../shared/datastore';
import { silentLogger } from '../../shared/log';
import { EtcdGrpcProxy } from '../../sim/etcd-proxy';
import { uniquePrefix } from '../../sim/etcd';
import { waitFor } from '../../sim/wait';
import { useEtcd } from '../helpers/etcd-hooks';

const clients: Datastore[] = [];
const setup = useEtcd(test, clients);
const KINDS: readonly SectionKind[] = ['pool', 'node', 'affinity', 'bgpConfiguration', 'bgpPeer'];

async function connect(endpoint: string, prefix: string): Promise<Datastore> {
  const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: endpoint }, {}), prefix });
  clients.push(ds);
  return ds;
}

/** Everything a view holds, as comparable text. */
function contents(view: ClusterView): Record<string, string[]> {
  return Object.fromEntries(KINDS.map((kind) => [kind, [...view.all(kind)].map((r) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).sort()]));
}

/** A view that is only ever told deltas: what a subscriber can rebuild from them. */
function mirrorOf(view: ClusterView): () => Record<string, string[]> {
  const mirror = new Map<string, Map<string, unknown>>(KINDS.map((k) => [k, new Map()]));
  for (const kind of KINDS) for (const record of view.all(kind)) mirror.get(kind)!.set(idFor(kind, record), record);
  view.subscribe((delta: ClusterDelta) => {
    const records = mirror.get(delta.kind)!;
    if (delta.after === undefined) records.delete(delta.id);
    else records.set(delta.id, delta.after);
  });
  return () => Object.fromEntries(KINDS.map((kind) => [kind, [...mirror.get(kind)!.values()].map((r) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).sort()]));
}

function idFor(kind: SectionKind, record: unknown): string {
  if (kind === 'affinity') {
    const a = record as ViewAffinity;
    return affinityId(a.host, a.cidr);
  }
  return (record as { name?: string; metadata?: { name: string } }).name ?? (record as { metadata: { name: string } }).metadata.name;
}

/** One random change of the kinds the view follows, including malformed values and keys of other shapes. */
function randomChange(ds: Datastore, random: () => number): { key: string; put?: string } {
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
  const host = `host-${pick(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'])}`;
  const block = `10.${Math.floor(random() * 4)}.0.${Math.floor(random() * 4) * 64}-26`;
  const resource = (kind: string, name: string, spec: object) => JSON.stringify({ kind, apiVersion: 'projectcalico.org/v3', metadata: { name }, spec });
  const malformed = random() < 0.05;
  const value = (text: string) => (malformed ? '{"kind": not json' : text);
  switch (pick(['pool', 'node', 'node', 'affinity', 'affinity', 'affinity', 'peer', 'config', 'other'])) {
    case 'pool': {
      const name = pick(['p1', 'p2', 'p3']);
      const key = ds.keys.resource('IPPool', name);
      if (random() < 0.2) return { key };
      return { key, put: value(resource('IPPool', name, { cidr: `10.${name.slice(1)}.0.0/16`, vxlanMode: pick(['Never', 'Always', 'CrossSubnet']), disabled: random() < 0.3 })) };
    }
    case 'node': {
      const key = ds.keys.resource('Node', host);
      if (random() < 0.2) return { key };
      return { key, put: value(resource('Node', host, { bgp: { ipv4Address: `192.168.0.${Math.floor(random() * 250)}/24` }, ipv4VXLANTunnelAddr: `10.1.0.${Math.floor(random() * 250)}` })) };
    }
    case 'affinity': {
      const key = `${ds.keys.affinitiesPrefix()}${host}/ipv4/block/${block}`;
      if (random() < 0.3) return { key };
      return { key, put: value(JSON.stringify({ state: pick(['confirmed', 'pending', 'pendingDeletion']), deleted: false })) };
    }
    case 'peer': {
      const name = pick(['rr1', 'rr2']);
      const key = ds.keys.resource('BGPPeer', name);
      return random() < 0.3 ? { key } : { key, put: value(resource('BGPPeer', name, { peerIP: `192.168.1.${Math.floor(random() * 250)}`, asNumber: 64512 })) };
    }
    case 'config':
      return { key: ds.keys.resource('BGPConfiguration', 'default'), put: value(resource('BGPConfiguration', 'default', { asNumber: 64512 + Math.floor(random() * 10) })) };
    default:
      // Keys under a followed prefix that name nothing the view keeps.
      return { key: `${ds.keys.affinitiesPrefix()}${host}/not-a-block`, put: '{}' };
  }
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

async function applyChanges(ds: Datastore, count: number, random: () => number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const change = randomChange(ds, random);
    await ds.kv.txn([change.put === undefined ? { key: change.key, delete: true } : { key: change.key, put: change.put }]);
  }
}

async function freshRead(ds: Datastore): Promise<Record<string, string[]>> {
  const view = new ClusterView(async () => ds, silentLogger);
  view.start();
  await view.ready;
  await view.stop();
  return contents(view);
}

test.serial('cluster view - after 1,000 random changes, the snapshot plus its events equals a fresh read; a compaction while its watch is away forces one bounded re-read that hands on only the differences', async (t) => {
  const prefix = uniquePrefix('view');
  const proxy = await EtcdGrpcProxy.start([setup.etcd.endpoint]);
  t.teardown(() => proxy.destroy());
  const direct = await connect(setup.etcd.endpoint, prefix);
  const viaProxy = await connect(proxy.endpoint, prefix);
  const random = seeded(16);
  await applyChanges(direct, 200, random);

  const view = new ClusterView(async () => viaProxy, silentLogger);
  view.start();
  t.teardown(() => view.stop());
  await view.ready;
  const mirror = mirrorOf(view);
  t.deepEqual(contents(view), await freshRead(direct), 'the snapshot is what etcd holds');

  await applyChanges(direct, 1000, random);
  const caughtUp = async () => JSON.stringify(contents(view)) === JSON.stringify(await freshRead(direct));
  await waitFor('the view to follow 1,000 changes', caughtUp, 15_000);
  t.deepEqual(mirror(), contents(view), 'a subscriber rebuilds the view from its deltas');
  t.is(view.snapshots, 1, 'the changes came as events, not re-reads');

  // The watch goes (the proxy dies), etcd moves on and compacts what the watch would resume from.
  await proxy.stop();
  await applyChanges(direct, 200, random);
  const revision = await direct.kv.revision();
  await promisify(execFile)('etcdctl', ['--endpoints', setup.etcd.endpoint, 'compact', revision], { env: { ...process.env, ETCDCTL_API: '3' } });
  await proxy.resume();
  await waitFor('the view to read everything again', () => view.snapshots === 2, 20_000);
  await waitFor('the view to equal a fresh read', caughtUp, 10_000);
  t.deepEqual(mirror(), contents(view), 'the re-read handed on exactly what changed meanwhile');
  t.true(KINDS.every((kind) => view.size(kind) === contents(view)[kind]!.length));
});
