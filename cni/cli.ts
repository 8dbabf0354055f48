/**
 * The process around one CNI invocation: read stdin, have the node daemon run it or run it here,
 * print, exit. Nothing heavy is loaded before it is known to be needed.
 */
import { DEFAULT_DAEMON_SOCKET, forward, type Invocation, type Outcome } from '../shared/daemon-forward';
import { print, readStdin } from '../shared/stdio';
import type { PluginKind } from './skel';
import { versionAnswer } from './version';

export async function main(kind: PluginKind): Promise<void> {
  let outcome: Outcome = { stdout: '', exitCode: 1 };
  try {
    outcome = await run(kind, { env: process.env, stdin: await readStdin() });
    if (outcome.stdout) print(outcome.stdout);
  } finally {
    process.exit(outcome.exitCode);
  }
}

async function run(kind: PluginKind, invocation: Invocation): Promise<Outcome> {
  // VERSION needs nothing else: answered before the daemon or the core is reached.
  if (invocation.env.CNI_COMMAND === 'VERSION') return { stdout: versionAnswer(invocation.stdin), exitCode: 0 };
  const socket = daemonSocketOf(invocation.stdin);
  const forwarded = socket ? await forward(socket, { kind, ...invocation }) : undefined;
  return forwarded ?? (await import('./in-process')).runInProcess(kind, invocation);
}

/** The socket named by the config's `daemon_socket` ("" turns forwarding off), else the default. */
function daemonSocketOf(stdin: string): string | undefined {
  try {
    const conf = JSON.parse(stdin) as { daemon_socket?: unknown };
    if (conf.daemon_socket === '') return undefined;
    return typeof conf.daemon_socket === 'string' ? conf.daemon_socket : DEFAULT_DAEMON_SOCKET;
  } catch {
    return DEFAULT_DAEMON_SOCKET;
  }
}
