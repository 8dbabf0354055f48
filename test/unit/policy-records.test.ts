import test from 'ava';
import { Interner } from '../../shared/policy/interner';
import { KeyLayout } from '../../shared/datastore';
import { PolicyCalculator } from '../../shared/policy/calculator';
import { applyRecord } from '../../shared/policy/records';
import { printSelector } from '../../shared/policy/selector';

const keys = new KeyLayout('/calico');
const wepKey = (name: string) => keys.resource('WorkloadEndpoint', name, 'default');
const wep = (interfaceName: string, ipNetworks: unknown = ['10.0.0.1/32'], extra: Record<string, unknown> = {}) => JSON.stringify({
  kind: 'WorkloadEndpoint',
  metadata: { name: 'h1-cni-x-eth0', namespace: 'default', labels: { app: 'web' } },
  spec: { node: 'h1', interfaceName, ipNetworks, profiles: ['netA'], ...extra },
});
const outcomeOf = (run: () => unknown) => {
  try {
    run();
    return 'applied';
  } catch (err) {
    return (err as { outcome?: string }).outcome;
  }
};

test('policy records - a good endpoint is programmed; one that goes bad keeps its last good version; one never good is left out; errors name key and field', (t) => {
  const calc = new PolicyCalculator('h1');
  applyRecord(calc, keys, wepKey('a'), wep('calia'));
  t.is(calc.ruleset.maps.ingress.get('calia')?.startsWith('ei_'), true);
  t.true(calc.ruleset.sets.get('wl_src4')!.elements.has('"calia" . 10.0.0.1'), 'its own address is its source');
  const injection = wep('cali" } ; flush ruleset ; {');
  const err = t.throws(() => applyRecord(calc, keys, wepKey('a'), injection), { message: /calico\/resources\/v3\/projectcalico.org\/workloadendpoints\/default\/a.*spec\.interfaceName/ });
  t.is(err!.constructor.name, 'MalformedDataError');
  t.is((err as unknown as { outcome: string }).outcome, 'kept last good');
  t.true(calc.ruleset.maps.ingress.has('calia'), 'the last good version stays in force');
  t.is(outcomeOf(() => applyRecord(calc, keys, wepKey('b'), wep('calib', ['10.0.0.0/24']))), 'left out');
  t.throws(() => applyRecord(calc, keys, wepKey('b'), wep('calib', ['10.0.0.0/24'])), { message: /spec\.ipNetworks\[0\].*only \/32 and \/128/ });
  t.false(calc.ruleset.maps.ingress.has('calib'), 'never read good: not programmed, so it passes nothing');
  t.throws(() => applyRecord(calc, keys, wepKey('c'), '{not json'), { message: /workloadendpoints\/default\/c/ });
  t.throws(() => applyRecord(calc, keys, wepKey('d'), JSON.stringify({ metadata: {}, spec: { node: 'h1', interfaceName: 'calid', ipNetworks: 'x' } })), { message: /field "spec\.ipNetworks" must be a list of strings/ });
  applyRecord(calc, keys, wepKey('a'), undefined);
  t.false(calc.ruleset.maps.ingress.has('calia'), 'a deletion removes it');
});

test('policy records - a rebuilt calculator takes a malformed record\'s last good version from the one it replaces', (t) => {
  const before = new PolicyCalculator('h1');
  applyRecord(before, keys, wepKey('a'), wep('calia'));
  const gnp = keys.resource('GlobalNetworkPolicy', 'p');
  applyRecord(before, keys, gnp, JSON.stringify({ kind: 'GlobalNetworkPolicy', metadata: { name: 'p' }, spec: { selector: 'all()', ingress: [{ action: 'Deny' }] } }));
  const after = new PolicyCalculator('h1');
  t.is(outcomeOf(() => applyRecord(after, keys, wepKey('a'), '[]', before)), 'kept last good');
  t.is(outcomeOf(() => applyRecord(after, keys, gnp, '{"spec":{"ingress":7}}', before)), 'kept last good');
  t.true(after.ruleset.maps.ingress.has('calia'));
  t.deepEqual(after.policy(gnp), before.policy(gnp));
});

test('policy records - a policy never read good denies everything to what its selector names, before every other policy; unreadable, to everyone', (t) => {
  const calc = new PolicyCalculator('h1');
  const gnp = keys.resource('GlobalNetworkPolicy', 'deny-all');
  t.is(outcomeOf(() => applyRecord(calc, keys, gnp, '{"kind":"GlobalNetworkPolicy","spec":{"selector":"has(pcn.netA)","ingress":[{"action":"Deny","source":{"nets":["bad"]}}]}}')), 'quarantined');
  const quarantined = calc.policy(gnp)!;
  t.is(printSelector(quarantined.selector), 'has(pcn.netA)');
  t.is(quarantined.order, -Infinity);
  t.deepEqual(quarantined.types, ['ingress', 'egress']);
  t.is(quarantined.ingress[0]!.action, 'Deny');
  const unreadable = keys.resource('NetworkPolicy', 'np', 'libnetwork');
  t.is(outcomeOf(() => applyRecord(calc, keys, unreadable, 'not json')), 'quarantined');
  t.is(printSelector(calc.policy(unreadable)!.selector), "projectcalico.org/namespace == 'libnetwork'", 'a NetworkPolicy stays in its namespace');
  t.is(outcomeOf(() => applyRecord(calc, keys, keys.resource('Profile', 'netA'), '{"spec":{"labelsToApply":{"pcn.netA":""},"ingress":"x"}}')), 'quarantined');
  t.deepEqual(calc.profile('netA')!.labelsToApply, { 'pcn.netA': '' }, 'its members keep the labels that readable');
  t.true(calc.profile('netA')!.quarantined);
});

test('policy records - Nodes are the known hosts; a FelixConfiguration gone bad keeps the last good one; other kinds are ignored', (t) => {
  const calc = new PolicyCalculator('h1');
  applyRecord(calc, keys, keys.resource('Node', 'n1'), JSON.stringify({ spec: { bgp: { ipv4Address: '10.99.0.11/24', ipv6Address: 'fd00::11/64' } } }));
  t.true(calc.ruleset.sets.get('hosts4')!.elements.has('10.99.0.11'));
  t.true(calc.ruleset.sets.get('hosts6')!.elements.has('fd00::11'));
  t.is(outcomeOf(() => applyRecord(calc, keys, keys.resource('Node', 'n1'), JSON.stringify({ spec: { bgp: { ipv4Address: 'fd00::1' } } }))), 'kept last good');
  t.true(calc.ruleset.sets.get('hosts4')!.elements.has('10.99.0.11'));
  applyRecord(calc, keys, keys.resource('Node', 'n1'), undefined);
  t.is(calc.ruleset.sets.get('hosts4')!.elements.size, 0);
  const felix = keys.resource('FelixConfiguration', 'default');
  applyRecord(calc, keys, felix, JSON.stringify({ spec: { defaultEndpointToHostAction: 'Accept' } }));
  t.throws(() => applyRecord(calc, keys, felix, JSON.stringify({ spec: { allowVXLANPacketsFromWorkloads: 'yes' } })), { message: /spec\.allowVXLANPacketsFromWorkloads: must be true or false/ });
  t.is(calc.felixSettings.defaultEndpointToHostAction, 'Accept');
  t.notThrows(() => applyRecord(calc, keys, keys.resource('IPPool', 'pool'), 'garbage'));
  t.notThrows(() => applyRecord(calc, keys, '/calico/ipam/v2/handle/x', 'garbage'));
  t.notThrows(() => applyRecord(calc, keys, keys.resource('GlobalNetworkPolicy', 'p'), undefined), 'a deletion of what was never there');
});

test('policy records - allowSpoofedSourcePrefixes widen an endpoint\'s sources only with workloadSourceSpoofing Any; nested prefixes merge', (t) => {
  const calc = new PolicyCalculator('h1');
  applyRecord(calc, keys, wepKey('s'), wep('calis', ['10.0.0.1/32', 'fd00::1/128'], { allowSpoofedSourcePrefixes: ['10.0.0.0/24', '192.168.0.0/16', '192.168.1.0/24'] }));
  const elements = (...sets: string[]) => sets.flatMap((set) => [...calc.ruleset.sets.get(set)!.elements]).sort();
  const sources = () => elements('wl_src4', 'wl_src6');
  const prefixes = () => elements('wl_pfx4', 'wl_pfx6');
  t.deepEqual(sources(), ['"calis" . 10.0.0.1', '"calis" . fd00::1'], 'its own addresses');
  t.deepEqual(prefixes(), [], 'the prefixes ignored while spoofing is Disabled');
  t.deepEqual([...calc.spoofingInterfaces()], []);
  applyRecord(calc, keys, keys.resource('FelixConfiguration', 'default'), JSON.stringify({ spec: { workloadSourceSpoofing: 'Any' } }));
  t.deepEqual(sources(), ['"calis" . 10.0.0.1', '"calis" . fd00::1'], 'its own addresses, as before');
  t.deepEqual(prefixes(), ['"calis" . 10.0.0.0/24', '"calis" . 192.168.0.0/16']);
  t.deepEqual([...calc.spoofingInterfaces()], ['calis']);
  t.throws(() => applyRecord(calc, keys, wepKey('t'), wep('calit', ['10.0.0.2/32'], { allowSpoofedSourcePrefixes: ['10.0.0.1/8'] })), { message: /allowSpoofedSourcePrefixes\[0\]/ });
});

test('interner - label sets, lists and strings alike are one frozen copy; sets that differ in any key or value stay apart', (t) => {
  const interner = new Interner();
  const a = interner.labels(JSON.parse('{"app":"web","tier":"front"}'));
  t.is(interner.labels(JSON.parse('{"app":"web","tier":"front"}')), a);
  t.true(Object.isFrozen(a));
  t.not(interner.labels({ app: 'web', tier: 'back' }), a);
  t.not(interner.labels({ 'app\u0000web': '' }), interner.labels({ app: 'web' }), 'no two sets share a key text');
  t.is(interner.list(['net1', 'net2']), interner.list(['net1', 'net2']));
  t.is(interner.list([]), interner.list([]));
  t.is(interner.labels({}), interner.labels({}));
  const hostile = interner.labels(JSON.parse('{"__proto__":"x","app":"web"}'));
  t.true(Object.hasOwn(hostile, '__proto__'), 'a "__proto__" label stays a label, as JSON.parse made it');
  t.deepEqual(Object.keys(hostile), ['__proto__', 'app']);
});
