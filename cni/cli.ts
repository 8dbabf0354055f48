/**
 * The process around one CNI invocation: read stdin, have the node daemon run it or run it here,
 * print, exit. Nothing heavy is loaded before it is known to be needed.
 */
import { fstatSync, read, writeSync } from 'node:fs';
import type { Invocation, Outcome, PluginKind } from './skel';
import { daemonSocketOf, forward } from './forward';
import { rawStreams } from './raw-streams';
import { versionAnswer } from './version';

/** A caller that never closes stdin must not hang the plugin: after this, what came is what there is. */
const STDIN_TIMEOUT_MS = 10_000;

/**
 * Stdin and stdout through their file descriptors, not process.stdin/stdout: those are streams
 * whose modules node would compile first (about 4 ms of a VERSION's start-up, measured). A pipe
 * or socket is read on the raw stream handles where they are verified (no thread pool started).
 * A terminal (or /dev/null) gives no config.
 */
async function readStdin(): Promise<string> {
  const stat = fstatSync(0);
  if (stat.isCharacterDevice()) return '';
  const streams = stat.isFIFO() || stat.isSocket() ? rawStreams() : undefined;
  if (streams) return (await streams.readToEnd(0, STDIN_TIMEOUT_MS)).data.toString('utf8');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const buffer = Buffer.alloc(64 << 10);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(finish, STDIN_TIMEOUT_MS);
    const next = () =>
      read(0, buffer, 0, buffer.length, null, (err, n) => {
        if (err || n === 0) return finish();
        chunks.push(Buffer.from(buffer.subarray(0, n)));
        next();
      });
    next();
  });
}

function print(text: string): void {
  const bytes = Buffer.from(`${text}\n`);
  for (let at = 0; at < bytes.length; ) {
    try {
      at += writeSync(1, bytes, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
    }
  }
}

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
