import test from 'ava';
import { parseConfig, parseJson } from '../../cni/config';
import { parseArgs, parseEnv } from '../../cni/env';
import { CniError, toCniError } from '../../cni/errors';
import { routeMetricFor } from '../../cni/attachment';
import { formatResult, parseResult, type CniResult } from '../../cni/result';
import { parseVersion } from '../../cni/version';
import { AddressInUseError, PoolsExhaustedError } from '../../shared/ipam/errors';
import { DatastoreUnavailableError } from '../../shared/datastore/errors';
import { formatAddress } from '../../shared/net';

const RESULT: CniResult = {
  interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/ns', mtu: 1400 }],
  ips: [{ address: '10.0.0.5/32', interface: 0 }, { address: 'fd00::5/128', interface: 0 }],
  routes: [],
  dns: {},
};

test('cni result - 0.2.0 takes the first address of each family', (t) => {
  t.deepEqual(formatResult(RESULT, '0.2.0'), { cniVersion: '0.2.0', ip4: { ip: '10.0.0.5/32' }, ip6: { ip: 'fd00::5/128' }, dns: {} });
  t.deepEqual(formatResult({ ips: [{ address: '10.0.0.5/32' }] }, '0.1.0'), { cniVersion: '0.1.0', ip4: { ip: '10.0.0.5/32' }, dns: {} });
  t.throws(() => formatResult({ ips: [] }, '0.2.0'), { message: /no IP address/ });
});

test('cni result - 0.3.x/0.4.0 carry ips[].version, 1.0.0 does not, 1.1.0 adds mtu', (t) => {
  const r03 = formatResult(RESULT, '0.3.1') as { ips: { version: string }[]; interfaces: object[] };
  t.deepEqual(r03.ips.map((i) => i.version), ['4', '6']);
  t.false('mtu' in r03.interfaces[0]!);
  const r10 = formatResult(RESULT, '1.0.0') as { ips: object[]; interfaces: object[] };
  t.false('version' in r10.ips[0]!);
  t.false('mtu' in r10.interfaces[0]!);
  const r11 = formatResult(RESULT, '1.1.0') as { interfaces: { mtu: number }[] };
  t.is(r11.interfaces[0]!.mtu, 1400);
});

test('cni result - results of any version read back into the newest form', (t) => {
  t.deepEqual(parseResult({ cniVersion: '0.2.0', ip4: { ip: '10.1.0.2/24', gateway: '10.1.0.1' } }, 'x').ips, [{ address: '10.1.0.2/24', gateway: '10.1.0.1' }]);
  t.deepEqual(parseResult(formatResult(RESULT, '0.4.0'), 'x').ips.map((i) => i.address), ['10.0.0.5/32', 'fd00::5/128']);
  t.throws(() => parseResult({ ips: [{}] }, 'the delegate'), { message: /the delegate: ips\[0\]\.address is missing/ });
});

test('cni version - missing means 0.1.0; unknown is code 1', (t) => {
  t.is(parseVersion(undefined), '0.1.0');
  t.is(parseVersion('1.1.0'), '1.1.0');
  const err = t.throws(() => parseVersion('0.5.0'), { instanceOf: CniError });
  t.is(err!.code, 1);
});

test('cni env - per-command requirements and the spec\'s name rules', (t) => {
  const base = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0' };
  const del = parseEnv(base);
  t.is(del.netns, undefined, 'DEL needs no netns');
  t.deepEqual(del.path, []);
  t.is(parseEnv({ CNI_COMMAND: 'STATUS' }).command, 'STATUS');
  t.regex(t.throws(() => parseEnv({ ...base, CNI_COMMAND: 'ADD' }))!.message, /CNI_NETNS, CNI_PATH: required for ADD/);
  t.regex(t.throws(() => parseEnv({ ...base, CNI_IFNAME: '..' }))!.message, /CNI_IFNAME/);
  t.regex(t.throws(() => parseEnv({ ...base, CNI_NETNS: 'relative' }))!.message, /CNI_NETNS.*absolute/);
  t.deepEqual([...parseArgs('IgnoreUnknown=1;FOO=bar;IP=10.0.0.1')], [['IgnoreUnknown', '1'], ['FOO', 'bar'], ['IP', '10.0.0.1']]);
});

test('cni config - defaults, Calico\'s string booleans, requested addresses from every source', (t) => {
  const env = parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/ns', CNI_PATH: '/opt/cni/bin', CNI_ARGS: 'IP=10.0.0.9' });
  const conf = parseConfig(parseJson(JSON.stringify({
    cniVersion: '0.2.0',
    name: 'net1',
    type: 'calico',
    nodename: 'node-a',
    ipam: { type: 'calico-ipam', assign_ipv6: 'true', ipv4_pools: ['10.0.0.0/16'] },
    runtimeConfig: { ips: ['10.0.0.7/24'] },
    args: {
      cni: { ips: ['fd00::7'] },
      'org.apache.mesos': { network_info: { name: 'net1', labels: { labels: [{ key: 'app', value: 'web' }, { key: 'ipv4_addrs', value: '["10.0.0.8"]' }] } } },
    },
  })), env, {});
  t.is(conf.nodename, 'node-a');
  t.is(conf.mtu, 1500);
  t.is(conf.logLevel, 'info');
  t.is(conf.logFile, '/var/log/calico/cni/cni.log');
  t.deepEqual(conf.ipam, { type: 'calico-ipam', assignIpv4: true, assignIpv6: true, ipv4Pools: ['10.0.0.0/16'], ipv6Pools: [] });
  t.deepEqual(conf.requestedIps.map(formatAddress), ['10.0.0.7', 'fd00::7', '10.0.0.9', '10.0.0.8']);
  t.deepEqual(conf.labels, { app: 'web' });
  t.deepEqual(conf.etcd.endpoints, ['http://127.0.0.1:2379']);
  t.is(parseConfig({ name: 'n', ipam: { type: 'x' }, log_file_path: '' }, undefined, {}).logFile, undefined);
});

test('cni errors - our core errors map to the spec\'s codes in one place', (t) => {
  t.is(toCniError(new DatastoreUnavailableError(['http://e:2379'], 'down')).code, 11);
  t.is(toCniError(new AddressInUseError('10.0.0.1', 'h')).code, 7);
  t.is(toCniError(new PoolsExhaustedError(['p'], 'full')).code, 101);
  t.is(toCniError(new Error('boom')).code, 100);
});

test('cni route metrics - eth0 preferred, ethN in order, other names distinct', (t) => {
  t.deepEqual(['eth0', 'eth1', 'eth12'].map(routeMetricFor), [0, 101, 112]);
  const others = ['net0', 'dbg0', 'dbg1', 'dbg2', 'calico', 'x'].map(routeMetricFor);
  t.true(others.every((m) => m >= 1000 && m < 1_001_000));
  t.is(new Set(others).size, others.length, 'two non-ethN interfaces never share a metric');
});
