import test from 'ava';
import { KeyLayout } from '../../shared/datastore';
import { PolicyCalculator } from '../../shared/policy/calculator';
import { applyRecord } from '../../shared/policy/records';

const keys = new KeyLayout('/calico');
const wepKey = (name: string) => keys.resource('WorkloadEndpoint', name, 'default');
const wep = (interfaceName: string, ipNetworks: unknown = ['10.0.0.1/32']) => JSON.stringify({
  kind: 'WorkloadEndpoint',
  metadata: { name: 'h1-cni-x-eth0', namespace: 'default', labels: { app: 'web' } },
  spec: { node: 'h1', interfaceName, ipNetworks, profiles: ['netA'] },
});

test('policy records - a good endpoint is programmed; one that goes bad is left out, and the error names its key and field', (t) => {
  const calc = new PolicyCalculator('h1');
  applyRecord(calc, keys, wepKey('a'), wep('calia'));
  t.is(calc.ruleset.maps.ingress.get('calia')?.startsWith('ei_'), true);
  const injection = wep('cali" } ; flush ruleset ; {');
  const err = t.throws(() => applyRecord(calc, keys, wepKey('a'), injection), { message: /calico\/resources\/v3\/projectcalico.org\/workloadendpoints\/default\/a.*spec\.interfaceName/ });
  t.is(err!.constructor.name, 'MalformedDataError');
  t.false(calc.ruleset.maps.ingress.has('calia'), 'the endpoint is no longer programmed (it passes nothing)');
  t.throws(() => applyRecord(calc, keys, wepKey('b'), wep('calib', ['10.0.0.0/24'])), { message: /only \/32 and \/128/ });
  t.throws(() => applyRecord(calc, keys, wepKey('c'), '{not json'), { message: /workloadendpoints\/default\/c/ });
});

test('policy records - bad policies are refused with their field; other kinds are ignored', (t) => {
  const calc = new PolicyCalculator('h1');
  const key = keys.resource('GlobalNetworkPolicy', 'p');
  t.throws(() => applyRecord(calc, keys, key, JSON.stringify({ kind: 'GlobalNetworkPolicy', metadata: { name: 'p' }, spec: { selector: 'has(' } })), { message: /globalnetworkpolicies\/p: .*spec\.selector: invalid selector/ });
  t.notThrows(() => applyRecord(calc, keys, keys.resource('IPPool', 'pool'), 'garbage'));
  t.notThrows(() => applyRecord(calc, keys, '/calico/ipam/v2/handle/x', 'garbage'));
  t.notThrows(() => applyRecord(calc, keys, key, undefined), 'a deletion of what was never there');
});
