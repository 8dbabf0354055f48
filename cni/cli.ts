/**
 * The process around one CNI invocation: read stdin, have the node daemon run it or run it here,
 * print, exit. Nothing heavy is loaded before it is known to be needed.
 */
import type { Outcome, PluginKind } from './skel';
import { daemonSocketOf, forward } from './forward';

/** A caller that never closes stdin must not hang the plugin: after this, what came is what there is. */
const STDIN_TIMEOUT_MS = 10_000;

function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return Promise.resolve('');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      process.stdin.pause();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(finish, STDIN_TIMEOUT_MS);
    process.stdin.on('data', (chunk: Buffer) => chunks.push(chunk));
    process.stdin.on('end', finish);
    process.stdin.on('error', finish);
  });
}

export async function main(kind: PluginKind): Promise<void> {
  let outcome: Outcome = { stdout: '', exitCode: 1 };
  try {
    const invocation = { env: process.env, stdin: await readStdin() };
    const socket = daemonSocketOf(invocation.stdin);
    const forwarded = socket ? await forward(socket, { kind, ...invocation }) : undefined;
    outcome = forwarded ?? (await (await import('./in-process')).runInProcess(kind, invocation));
    if (outcome.stdout) await new Promise<void>((resolve) => process.stdout.write(`${outcome.stdout}\n`, () => resolve()));
  } finally {
    process.exit(outcome.exitCode);
  }
}
