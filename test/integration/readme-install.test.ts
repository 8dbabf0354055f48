/**
 * The README's install steps, followed literally on two simulated agents: its shell block run as
 * written (every absolute path moved under a directory of the test's own, the environment file's
 * values this fabric's), the daemon's unit's ExecStart line run by hand with its EnvironmentFile,
 * calico-install with the flags the README names for a daemon of its own paths; it ends with a
 * task on each agent reaching the other. Then the net-modules exchanges the README shows, replayed
 * against calico_mesos: the same answers.
 */
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { MesosAgent } from '../../sim/mesos-agent';
import type { Netns } from '../../sim/netns';
import { waitFor } from '../../sim/wait';
import { CniWorld } from '../../sim/world';

const run = promisify(execFile);
const README = readFileSync('README.md', 'utf8');

let world: CniWorld;
const daemons: ChildProcess[] = [];
const roots: string[] = [];

test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  for (const daemon of daemons) daemon.kill('SIGKILL');
  await world?.destroy();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** The fenced block of `language` that starts with `firstLine`. */
function block(language: string, firstLine: string): string {
  const start = README.indexOf(`\`\`\`${language}\n${firstLine}`);
  if (start < 0) throw new Error(`the README has no ${language} block starting "${firstLine}"`);
  const body = README.slice(start + language.length + 4);
  return body.slice(0, body.indexOf('\n```'));
}

/** Absolute paths of a real host, moved under `root`. */
function rooted(text: string, root: string): string {
  return text.replace(/(?<=[\s'"=])\/(etc|opt|usr|var|run)\//g, `${root}/$1/`);
}

async function install(host: Netns, node: string): Promise<{ root: string; pluginsDir: string; confDir: string }> {
  const root = mkdtempSync(join(tmpdir(), 'readme-install-'));
  roots.push(root);
  // What every host has already.
  for (const dir of ['usr/local/bin', 'etc/systemd/system']) mkdirSync(join(root, dir), { recursive: true });
  const daemonPaths = { socket: join(root, 'run/calico/cni.sock'), mtu: join(root, 'var/lib/calico/mtu'), log: join(root, 'var/log/calico/cni.log') };
  const script = rooted(block('sh', "# 1. This agent's datastore settings"), root)
    // This fabric's datastore (plain http here: the suite's TLS is tested elsewhere) and this agent's name.
    .replace(/^ETCD_ENDPOINTS=.*$/m, `ETCD_ENDPOINTS=${world.fabric.hostEndpoints}`)
    .replace(/^ETCD_(CA_CERT|CERT|KEY)_FILE=.*\n/gm, '')
    .replace(/^NODENAME=.*$/m, `NODENAME=${node}`)
    // Two daemons on one machine: each with paths of its own, and the plugins told them.
    .replace(/--nodename "\$NODENAME"/, `--nodename "$NODENAME" --daemon-socket ${daemonPaths.socket} --mtu-file ${daemonPaths.mtu} --log-file ${daemonPaths.log}`)
    // systemd is the host's: its unit is run by hand below.
    .replace(/&& systemctl enable --now calico-libnetwork/, '');
  await host.exec('bash', ['-euo', 'pipefail', '-c', script], { timeout: 60_000 }).catch((err: { stderr?: string }) => {
    throw new Error(`the README's install steps failed: ${err.stderr}`);
  });
  const unit = readFileSync(join(root, 'etc/systemd/system/calico-libnetwork.service'), 'utf8');
  const envFile = /^EnvironmentFile=(.*)$/m.exec(unit)![1]!;
  const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!;
  const command = `set -a && . ${rooted(` ${envFile}`, root).trim()} && set +a && exec ${rooted(` ${execStart}`, root).trim()}`
    + ` --cni-socket ${daemonPaths.socket} --mtu-file ${daemonPaths.mtu} --plugin-dir ${join(root, 'run/docker/plugins')} --bird-dir ${join(root, 'var/run/calico/bird')} --metrics-address ''`;
  const daemon = spawn('nsenter', [`--net=${host.path}`, 'bash', '-c', command], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  daemon.stderr!.on('data', (d) => (log += d));
  daemons.push(daemon);
  await waitFor('the daemon started from its unit', () => existsSync(daemonPaths.socket) || daemon.exitCode !== null, 15_000);
  if (daemon.exitCode !== null) throw new Error(`the daemon exited: ${log}`);
  return { root, pluginsDir: join(root, 'opt/cni/bin'), confDir: join(root, 'etc/mesos/cni') };
}

test.serial('readme install - the install steps as written, on two agents: a task on each reaches the other', async (t) => {
  const agents = [await world.addAgent(), await world.addAgent()];
  const installed = [await install(agents[0]!.host, 'readme-1'), await install(agents[1]!.host, 'readme-2')];
  // "create a pool once", with the calicoctl the install step put in place.
  const calicoctl = join(installed[0]!.root, 'usr/local/bin/calicoctl');
  const init = await agents[0]!.host.exec(calicoctl, ['--etcd-endpoints', world.fabric.hostEndpoints, 'datastore', 'init', '--default-pool', '10.96.0.0/16']);
  t.regex(init.stdout, /default-ipv4-ippool/);
  const tasks: { mesos: MesosAgent; id: string; ip: string }[] = [];
  for (const [i, { pluginsDir, confDir }] of installed.entries()) {
    const conf = JSON.parse(readFileSync(join(confDir, '10-calico.conf'), 'utf8')) as Record<string, unknown>;
    t.is(conf.nodename, `readme-${i + 1}`, 'one node name for the daemon and the plugins');
    const mesos = new MesosAgent(agents[i]!.host, pluginsDir);
    t.teardown(() => mesos.cleanup());
    const id = randomUUID();
    const launched = await mesos.launch(id, [{ network: conf as never }]);
    t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
    tasks.push({ mesos, id, ip: launched.ips[0]!.ip4!.split('/')[0]! });
  }
  await waitFor('the task on agent 1 to reach the one on agent 2', () => tasks[0]!.mesos.container(tasks[0]!.id).ping(tasks[1]!.ip), 20_000);
  t.true(await tasks[1]!.mesos.container(tasks[1]!.id).ping(tasks[0]!.ip), 'and back');
  for (const task of tasks) for (const r of await task.mesos.destroy(task.id)) t.is(r.code, 0, r.stdout);
});

test.serial('readme install - the net-modules exchanges the README shows are what calico_mesos answers', async (t) => {
  const host = world.agents[0]!.host;
  const lines = block('text', 'allocate  {').split('\n');
  const exchanges = new Map<string, { request: Record<string, unknown>; answer: Record<string, unknown> }>();
  for (let i = 0; i < lines.length; i += 2) {
    const [, name, request] = /^(\w+(?: \w+)?)\s+(\{.*\})$/.exec(lines[i]!)!;
    exchanges.set(name!, { request: JSON.parse(request!), answer: JSON.parse(lines[i + 1]!.replace(/^\s*-> /, '')) });
  }
  const env = { ETCD_ENDPOINTS: world.fabric.hostEndpoints, NODENAME: 'agent-1', CALICO_CNI_SOCKET: '', CALICO_NO_POLICY: 'true', PATH: process.env.PATH ?? '' };
  const call = async (request: Record<string, unknown>) => {
    const child = execFile('nsenter', [`--net=${host.path}`, resolve('dist/bin/calico_mesos')], { env }, () => undefined);
    child.stdin!.end(JSON.stringify(request));
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    await new Promise((done) => child.on('exit', done));
    return JSON.parse(out) as Record<string, unknown>;
  };
  const allocated = await call(exchanges.get('allocate')!.request);
  t.deepEqual(Object.keys(allocated).sort(), Object.keys(exchanges.get('allocate')!.answer).sort());
  t.is(allocated.error, null);
  t.is((allocated.ipv4 as string[]).length, 1);
  t.deepEqual(await call(exchanges.get('reserve')!.request), exchanges.get('reserve')!.answer);
  // isolate wires a real process's namespace with the address allocate gave.
  const netns = `readme-${Math.random().toString(36).slice(2, 8)}`;
  await run('ip', ['netns', 'add', netns]);
  t.teardown(() => run('ip', ['netns', 'del', netns]).catch(() => undefined));
  const executor = spawn('ip', ['netns', 'exec', netns, 'sleep', '600'], { stdio: 'ignore' });
  t.teardown(() => executor.kill('SIGKILL'));
  await new Promise((ready) => executor.once('spawn', ready));
  const isolate = exchanges.get('isolate')!.request as { args: Record<string, unknown> };
  t.deepEqual(await call({ ...isolate, args: { ...isolate.args, pid: executor.pid, ipv4_addrs: allocated.ipv4 } }), exchanges.get('isolate')!.answer);
  t.deepEqual(await call(exchanges.get('cleanup')!.request), exchanges.get('cleanup')!.answer);
  const release = exchanges.get('release')!.request as { args: Record<string, unknown> };
  t.deepEqual(await call({ ...release, args: { ips: [...(allocated.ipv4 as string[]), '10.96.0.20'] } }), exchanges.get('release')!.answer);
  t.deepEqual(await call(exchanges.get('a refusal')!.request), exchanges.get('a refusal')!.answer);
});
