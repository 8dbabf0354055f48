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
    t.is(readFileSync(join(dir, 'bin', plugin), 'utf8').split('\n')[0], `#!${process.execPath} --v8-pool-size=0`, 'the node that installed it runs it');
    // From another directory, with no node_modules anywhere near, and no node in PATH: the bundle stands alone.
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
