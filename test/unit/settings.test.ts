import test from 'ava';
import { etcdSettingsFrom } from '../../shared/datastore/settings';

test('settings - defaults to the local etcd', (t) => {
  const s = etcdSettingsFrom({}, {});
  t.deepEqual(s.endpoints, ['http://127.0.0.1:2379']);
  t.is(s.prefix, '/calico');
  t.is(s.timeoutMs, 5000);
});

test('settings - config wins over the environment, endpoints over authority', (t) => {
  const env = { ETCD_ENDPOINTS: 'http://10.0.0.1:2379', ETCD_AUTHORITY: '10.0.0.2:4001' };
  t.deepEqual(etcdSettingsFrom({ etcd_endpoints: 'https://a:2379, http://b' }, env).endpoints, ['https://a:2379', 'http://b:2379']);
  t.deepEqual(etcdSettingsFrom({ etcd_authority: '10.0.0.3:4001' }, env).endpoints, ['http://10.0.0.3:4001']);
  t.deepEqual(etcdSettingsFrom({}, env).endpoints, ['http://10.0.0.1:2379']);
  t.deepEqual(etcdSettingsFrom({}, { ETCD_AUTHORITY: '10.0.0.2:4001' }).endpoints, ['http://10.0.0.2:4001']);
  t.is(etcdSettingsFrom({ etcd_ca_cert_file: '/c' }, { ETCD_CA_CERT_FILE: '/e' }).caCertFile, '/c');
  t.is(etcdSettingsFrom({}, { ETCD_CA_CERT_FILE: '/e' }).caCertFile, '/e');
  t.deepEqual(etcdSettingsFrom({ etcd_endpoints: 'unix:///run/etcd.sock' }, {}).endpoints, ['unix:///run/etcd.sock']);
  t.throws(() => etcdSettingsFrom({ etcd_endpoints: 'unix://relative.sock' }, {}), { message: /absolute path/ });
});

test('settings - bad values name the field they came from', (t) => {
  t.regex(t.throws(() => etcdSettingsFrom({ etcd_endpoints: 'ftp://x' }, {}))!.message, /invalid etcd_endpoints: "ftp:\/\/x" must use http/);
  t.regex(t.throws(() => etcdSettingsFrom({}, { ETCD_ENDPOINTS: 'not a url' }))!.message, /invalid ETCD_ENDPOINTS/);
  t.regex(t.throws(() => etcdSettingsFrom({ etcd_endpoints: 42 }, {}))!.message, /invalid etcd_endpoints: expected a string/);
  t.regex(t.throws(() => etcdSettingsFrom({ etcd_endpoints: 'http://a/path' }, {}))!.message, /must not have a path/);
  t.regex(t.throws(() => etcdSettingsFrom({ etcd_cert_file: '/c' }, {}))!.message, /together/);
  t.regex(t.throws(() => etcdSettingsFrom({}, { ETCD_TIMEOUT_MS: 'soon' }))!.message, /invalid ETCD_TIMEOUT_MS/);
  t.regex(t.throws(() => etcdSettingsFrom({ etcd_prefix: 'calico/' }, {}))!.message, /invalid etcd_prefix/);
});
