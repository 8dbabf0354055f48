/**
 * The shell front of the per-command executables (shared/front.sh): it hands the invocation to the
 * node daemon through socat, and node runs the file, standalone, only when no daemon answers. Run
 * here from dist/ as built (the front names no node of its own), inside the agent's namespace.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ANSWER_END } from '../../daemon/forward-framing';
import { NodeDaemon } from '../../sim/daemon';
import { HOST_PATH, runPlugin, type PluginRun } from '../../sim/cni-exec';
import { NetmodulesAgent } from '../../sim/netmodules-agent';
import { waitFor } from '../../sim/wait';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';

const setup = useCniWorld(test);
const NODE = 'agent1';
const VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const CNI = { calico: resolve('dist/cni/calico'), 'calico-ipam': resolve('dist/cni/calico-ipam') };

let dir: string;
let daemon: NodeDaemon;
/** PATHs of one directory each, holding only the programs named (nsenter starts the executable). */
const paths = {} as Record<'withoutNode' | 'withoutSocat', string>;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'front-'));
  const pathWith = (name: string, programs: string[]) => {
    mkdirSync(join(dir, name));
    for (const program of programs) symlinkSync(program === 'node' ? process.execPath : execFileSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).trim(), join(dir, name, program));
    return join(dir, name);
  };
  paths.withoutNode = pathWith('no-node', ['nsenter', 'socat', 'timeout', 'cat', 'env']);
  paths.withoutSocat = pathWith('no-socat', ['nsenter', 'timeout', 'cat', 'env', 'node', 'ip']);
});
test.after.always(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function scenario(t: ExecutionContext, label: string) {
  const { prefix, ds } = await setup.world.scenario(label);
  daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', NODE, '--no-routes', '--no-policy', '--gc-interval', '0', '--metrics-address', '']);
  t.teardown(() => daemon.destroy());
  return { prefix, ds };
}

function cniEnv(command: string, id: string, path: string): Record<string, string> {
  return { CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: setup.agent.netnsPath(id), CNI_PATH: '/nonexistent', PATH: path };
}

/** Through the shell front, with no node on PATH: only the daemon can answer. */
const viaShell = (plugin: keyof typeof CNI, env: Record<string, string>, stdin: string) => runPlugin(setup.agent.host, CNI[plugin], { ...env, PATH: paths.withoutNode }, stdin);
/** node running the file itself, as the front does when no daemon answers. */
const viaNode = (plugin: keyof typeof CNI, env: Record<string, string>, stdin: string) => runPlugin(setup.agent.host, process.execPath, { ...env, PATH: HOST_PATH }, stdin, 60_000, [CNI[plugin]]);

function same(t: ExecutionContext, shell: PluginRun, node: PluginRun, what: string): void {
  t.is(shell.stdout, node.stdout, `${what}: stdout`);
  t.is(shell.code, node.code, `${what}: exit code`);
}

for (const version of VERSIONS) {
  test.serial(`front - CNI ${version}: every command of both plugins answers byte for byte as node does`, async (t) => {
    const { prefix, ds } = await scenario(t, `front-${version.replace(/\./g, '')}`);
    const conf = { ...setup.world.network('front', prefix, NODE, { daemon_socket: daemon.cniSocket, log_level: 'debug', log_file_path: '' }), cniVersion: version };
    const stdin = JSON.stringify(conf);
    // With no node on PATH, only the daemon (or the shell, for VERSION) could answer as node does.
    const compare = async (plugin: keyof typeof CNI, env: Record<string, string>, input: string, what: string) => {
      same(t, await viaShell(plugin, env, input), await viaNode(plugin, env, input), `${plugin} ${what}`);
    };
    for (const plugin of ['calico', 'calico-ipam'] as const) {
      // VERSION: the shell's own answer (no daemon asked), and the daemon's for a whole config.
      for (const input of [`{"cniVersion":"${version}"}`, '', stdin]) await compare(plugin, { CNI_COMMAND: 'VERSION' }, input, `VERSION of ${input.slice(0, 30)}`);
      const [a, b] = [randomUUID(), randomUUID()];
      await setup.agent.createContainer(a);
      await setup.agent.createContainer(b);
      // ADD through one path, then again through the other: a repeat ADD answers what the first did.
      const addA = await viaShell(plugin, cniEnv('ADD', a, ''), stdin);
      t.is(addA.code, 0, addA.stdout);
      same(t, addA, await viaNode(plugin, cniEnv('ADD', a, ''), stdin), `${plugin} repeat ADD`);
      const addB = await viaNode(plugin, cniEnv('ADD', b, ''), stdin);
      same(t, await viaShell(plugin, cniEnv('ADD', b, ''), stdin), addB, `${plugin} repeat ADD, the other way`);
      const withPrev = JSON.stringify({ ...conf, prevResult: addA.json });
      await compare(plugin, cniEnv('CHECK', a, ''), withPrev, 'CHECK');
      await compare(plugin, cniEnv('STATUS', '', ''), stdin, 'STATUS');
      await compare(plugin, cniEnv('GC', '', ''), JSON.stringify({ ...conf, 'cni.dev/valid-attachments': [a, b].map((id) => ({ containerID: id, ifname: 'eth0' })) }), 'GC');
      await compare(plugin, { ...cniEnv('ADD', a, ''), CNI_CONTAINERID: '' }, stdin, 'ADD without a container');
      await compare(plugin, cniEnv('ADD', a, ''), stdin.slice(0, -1), 'ADD of half a config');
      await compare(plugin, cniEnv('FROB', a, ''), stdin, 'an unknown command');
      for (const id of [a, b]) {
        await compare(plugin, cniEnv('DEL', id, ''), withPrev, 'DEL');
        await setup.agent.destroy(id);
      }
    }
    await assertNothingLeft(t, ds, [setup.agent]);
  });
}

/** A socket whose server reads a request and, after `delayMs`, writes `answer` and closes (half an answer: a daemon dying as it answers). */
async function fakeDaemon(t: ExecutionContext, path: string, answer: string, delayMs = 0): Promise<void> {
  const serve = `(s) => { s.on('data', () => {}); s.on('end', () => setTimeout(() => { s.write(${JSON.stringify(answer)}); s.destroy(); }, ${delayMs})); }`;
  const server = spawn(process.execPath, ['-e', `require('node:net').createServer({ allowHalfOpen: true }, ${serve}).listen(${JSON.stringify(path)})`], { stdio: 'ignore' });
  t.teardown(() => server.kill('SIGKILL'));
  await waitFor('the fake daemon to listen', async () => existsSync(path), 5000);
}

/** A socket file left by a daemon that is gone. */
async function staleSocket(path: string): Promise<void> {
  const listener = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)})`], { stdio: 'ignore' });
  await waitFor('the socket', async () => existsSync(path), 5000);
  listener.kill('SIGKILL');
  await new Promise((exited) => listener.once('exit', exited));
}

test.serial('front - CNI: without socat, with a stale socket, with a daemon that dies while answering, with 1 MiB of stdin: node answers, whole; a slow daemon is waited for; with no node either, an error in the config\'s version', async (t) => {
  const { prefix, ds } = await scenario(t, 'front-cni-fail');
  const stale = join(dir, 'cni-stale.sock');
  const dying = join(dir, 'cni-dying.sock');
  await staleSocket(stale);
  await fakeDaemon(t, dying, '0{"cniVersion":"1.0.0","interfaces":[{"na');
  const conf = (extra: Record<string, unknown>) => JSON.stringify({ ...setup.world.network('front', prefix, NODE, { log_level: 'debug', log_file_path: '' }), cniVersion: '1.0.0', ...extra });
  const cases: [string, Record<string, unknown>, string][] = [
    ['no socat', { daemon_socket: daemon.cniSocket }, paths.withoutSocat],
    ['a stale socket', { daemon_socket: stale }, HOST_PATH],
    ['a daemon that dies while answering', { daemon_socket: dying }, HOST_PATH],
    ['1 MiB of stdin', { daemon_socket: daemon.cniSocket, padding: 'x'.repeat(1 << 20) }, HOST_PATH],
    ['a daemon_socket not written plainly', { daemon_socket: daemon.cniSocket.replace('/', '\\/') }, HOST_PATH],
  ];
  for (const [what, extra, path] of cases) {
    for (const plugin of ['calico', 'calico-ipam'] as const) {
      const id = randomUUID();
      await setup.agent.createContainer(id);
      const add = await runPlugin(setup.agent.host, CNI[plugin], cniEnv('ADD', id, path), conf(extra));
      t.is(add.code, 0, `${what}: ${add.stdout}`);
      t.is(add.stdout.split('\n').length, 2, `${what}: one line of JSON`);
      t.is(add.json?.cniVersion, '1.0.0');
      t.regex(add.stderr, /invoked/, `${what}: node ran it (its log is on stderr, the daemon's in its own)`);
      const del = await runPlugin(setup.agent.host, CNI[plugin], cniEnv('DEL', id, path), conf(extra));
      t.is(del.code, 0, del.stdout);
      await setup.agent.destroy(id);
    }
  }
  // A daemon that takes its time (a burst) is waited for.
  const slow = join(dir, 'cni-slow.sock');
  await fakeDaemon(t, slow, `0{"cniVersion":"1.0.0","slow":true}${ANSWER_END}`, 1500);
  const waited = await runPlugin(setup.agent.host, CNI.calico, cniEnv('ADD', randomUUID(), paths.withoutNode), conf({ daemon_socket: slow }));
  t.is(waited.stdout, '{"cniVersion":"1.0.0","slow":true}\n', 'the slow answer, printed');
  t.is(waited.code, 0);
  // The daemon's socket named, with no node on PATH: the daemon answers.
  const status = await runPlugin(setup.agent.host, CNI.calico, cniEnv('STATUS', '', paths.withoutNode), conf({ cniVersion: '1.1.0', daemon_socket: daemon.cniSocket }));
  t.is(status.code, 0, status.stdout);
  t.is(status.stderr, '');
  for (const plugin of ['calico', 'calico-ipam'] as const) {
    const nowhere = await runPlugin(setup.agent.host, CNI[plugin], cniEnv('ADD', randomUUID(), paths.withoutNode), conf({ cniVersion: '0.3.1', daemon_socket: stale }));
    t.is(nowhere.code, 1);
    t.like(nowhere.json, { cniVersion: '0.3.1', code: 11 });
    t.regex(String(nowhere.json?.msg), new RegExp(`${plugin} needs its node daemon listening`));
  }
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('front - calico_mesos: through the daemon with no node on PATH; without socat, with a stale socket, with a daemon that dies while answering, with 1 MiB of stdin: node answers; one JSON object each time', async (t) => {
  const { prefix } = await scenario(t, 'front-mesos');
  const stale = join(dir, 'nm-stale.sock');
  const dying = join(dir, 'nm-dying.sock');
  await staleSocket(stale);
  await fakeDaemon(t, dying, '0{"error": n');
  const env = { ETCD_ENDPOINTS: setup.world.fabric.hostEndpoints, ETCD_PREFIX: prefix, NODENAME: NODE };
  const agent = (extra: Record<string, string>) => new NetmodulesAgent(setup.agent.host, { ...env, ...extra }, 'h');
  const served = () => daemon.stderr.match(/plugin=calico_mesos command=allocate/g)?.length ?? 0;
  const allocateAndRelease = async (through: NetmodulesAgent, what: string) => {
    const uid = what.replaceAll(' ', '-');
    const allocated = await through.call('allocate', { hostname: 'h', uid, num_ipv4: 1 });
    t.is(allocated.answer?.error, null, `${what}: ${allocated.stdout}`);
    t.is(allocated.stdout.split('\n').length, 2, `${what}: one line of JSON`);
    t.is((await through.call('release', { uid })).answer?.error, null);
  };

  await allocateAndRelease(agent({ PATH: paths.withoutNode, CALICO_CNI_SOCKET: daemon.cniSocket }), 'shell');
  t.is(served(), 1, 'the shell reached the daemon with no node on PATH');
  for (const [what, extra] of [
    ['no socat', { PATH: paths.withoutSocat, CALICO_CNI_SOCKET: daemon.cniSocket }],
    ['a stale socket', { CALICO_CNI_SOCKET: stale }],
    ['a daemon that dies while answering', { CALICO_CNI_SOCKET: dying }],
  ] as const) {
    await allocateAndRelease(agent(extra), what);
    t.is(served(), 1, `${what}: node ran it, not the daemon`);
  }
  const nowhere = await agent({ PATH: paths.withoutNode, CALICO_CNI_SOCKET: stale }).call('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1 });
  t.is(nowhere.code, 1);
  t.regex(String(nowhere.answer?.error), /needs its node daemon listening \(and socat\), or node/);

  const script = agent({ CALICO_CNI_SOCKET: daemon.cniSocket });
  for (const raw of ['', 'not json', '{"command": 7}\n\n', 'x'.repeat(1 << 20)]) {
    const run = await script.call('', {}, raw);
    t.is(run.code, 1);
    t.is(typeof run.answer?.error, 'string', `stdout is one JSON object: ${run.stdout.slice(0, 100)}`);
    t.is(run.stdout.trim().split('\n').length, 1);
  }
});

/** The pids of the processes whose environment holds `needle` (a container's ID: its plugin's). */
function processesWith(needle: string): number[] {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(needle);
    } catch {
      return false; // gone meanwhile, or not ours to read
    }
  }).map(Number);
}

test.serial('front - standalone, node takes over the plugin\'s own process: a runtime that kills the plugin stops the command, and no ADD runs on after it', async (t) => {
  const { prefix, ds } = await scenario(t, 'front-kill');
  const conf = JSON.stringify({ ...setup.world.network('front', prefix, NODE, { daemon_socket: '' }), cniVersion: '1.0.0' });
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const child = spawn('nsenter', [`--net=${setup.agent.host.path}`, CNI.calico], { env: cniEnv('ADD', id, HOST_PATH), stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.stdin.end(conf);
  const node = realpathSync(process.execPath);
  await waitFor('node in the plugin\'s process', () => {
    try {
      return readlinkSync(`/proc/${child.pid}/exe`) === node;
    } catch {
      return false;
    }
  }, 10_000, 5);
  child.kill('SIGKILL');
  await exited;
  t.deepEqual(processesWith(id), [], 'nothing of that ADD still runs');
  const del = await runPlugin(setup.agent.host, CNI.calico, cniEnv('DEL', id, HOST_PATH), conf);
  t.is(del.code, 0, del.stdout);
  await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});
