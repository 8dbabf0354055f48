import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../../cni/config';

const run = promisify(execFile);

test('cni install - copies self-contained plugins and writes a config the plugin accepts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'install-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const install = resolve('dist/bin/calico-install');
  await run(install, ['--plugins-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'conf'), '--network', 'calico', '--nodename', 'agent-7', '--etcd-endpoints', 'http://10.0.0.10:2379']);
  for (const plugin of ['calico', 'calico-ipam']) {
    t.true((statSync(join(dir, 'bin', plugin)).mode & 0o111) !== 0, `${plugin} is executable`);
    t.true(readFileSync(join(dir, 'bin', plugin), 'utf8').includes(`\n":" //; front_node='${process.execPath}'\n`), 'the node that installed it runs it');
    // From another directory, with no node_modules anywhere near, and nothing in PATH (the shell
    // can read nothing: node answers): the bundle stands alone.
    const version = run(join(dir, 'bin', plugin), [], { cwd: '/', env: { CNI_COMMAND: 'VERSION', PATH: '/nonexistent' } });
    version.child.stdin!.end('{"cniVersion":"0.3.1"}');
    t.is(JSON.parse((await version).stdout).cniVersion, '0.3.1');
  }
  const conf = JSON.parse(readFileSync(join(dir, 'conf', '10-calico.conf'), 'utf8'));
  t.is(conf.cniVersion, '0.2.0');
  t.is(parseConfig(conf, undefined, {}).nodename, 'agent-7');
  const again = await t.throwsAsync(run(install, ['--plugins-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'conf'), '--network', 'calico']));
  t.regex((again as unknown as { stderr: string }).stderr, /exists; pass --force/);
  const bad = await t.throwsAsync(run(install, ['--plugins-dir', join(dir, 'other'), '--conf-dir', join(dir, 'conf'), '--network', 'no good']));
  t.regex((bad as unknown as { stderr: string }).stderr, /"name" "no good" must be a network name/);
  t.throws(() => statSync(join(dir, 'other')), undefined, 'nothing is installed when the config is refused');
});

test('cni install - TLS files, a user and password, and --no-policy go into the config; a password keeps it root\'s alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'install-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const install = resolve('dist/bin/calico-install');
  const common = ['--plugins-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'conf'), '--etcd-endpoints', 'https://10.0.0.10:2379'];
  await run(install, [...common, '--network', 'tls', '--etcd-ca-cert-file', '/etc/calico/pki/ca.crt', '--etcd-cert-file', '/etc/calico/pki/calico.crt', '--etcd-key-file', '/etc/calico/pki/calico.key', '--no-policy']);
  const tls = JSON.parse(readFileSync(join(dir, 'conf', '10-tls.conf'), 'utf8'));
  const parsed = parseConfig(tls, undefined, {});
  t.deepEqual([parsed.etcd.caCertFile, parsed.etcd.certFile, parsed.etcd.keyFile], ['/etc/calico/pki/ca.crt', '/etc/calico/pki/calico.crt', '/etc/calico/pki/calico.key']);
  t.true(parsed.noPolicy);
  t.is(statSync(join(dir, 'conf', '10-tls.conf')).mode & 0o777, 0o644);
  await run(install, [...common, '--network', 'auth', '--etcd-username', 'calico', '--etcd-password', 's3cret']);
  const auth = parseConfig(JSON.parse(readFileSync(join(dir, 'conf', '10-auth.conf'), 'utf8')), undefined, {});
  t.deepEqual([auth.etcd.username, auth.etcd.password, auth.noPolicy], ['calico', 's3cret', false]);
  t.is(statSync(join(dir, 'conf', '10-auth.conf')).mode & 0o777, 0o600, 'a password: root only');
});

test('cni plugin - reads its config from a pipe, a socket or a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stdin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plugin = resolve('dist/cni/calico');
  const env = { CNI_COMMAND: 'VERSION', PATH: `${dirname(process.execPath)}:/usr/bin:/bin` };
  writeFileSync(join(dir, 'conf'), '{"cniVersion":"0.4.0"}');
  const fromPipe = await run('sh', ['-c', `cat "${join(dir, 'conf')}" | "${plugin}"`], { env });
  const fromFile = await run('sh', ['-c', `"${plugin}" < "${join(dir, 'conf')}"`], { env });
  const fromSocket = run(plugin, [], { env });
  fromSocket.child.stdin!.end('{"cniVersion":"0.4.0"}');
  for (const { stdout } of [fromPipe, fromFile, await fromSocket]) t.is(JSON.parse(stdout).cniVersion, '0.4.0');
});

test('cni install - the sample configs in conf/ are valid', (t) => {
  const conf = JSON.parse(readFileSync('conf/calico.conf', 'utf8'));
  t.is(parseConfig(conf, undefined, {}).cniVersion, '0.2.0');
  const list = JSON.parse(readFileSync('conf/calico.conflist', 'utf8'));
  // libcni hands each plugin of a list its entry with the list's name and version.
  t.is(parseConfig({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion }, undefined, {}).ipam.type, 'calico-ipam');
});
