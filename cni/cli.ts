/** The process around one CNI invocation: read stdin, run, print, exit. */
import { Connections } from './backend';
import { runCni, type PluginKind } from './skel';

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
  const connections = new Connections();
  let exitCode = 1;
  try {
    const outcome = await runCni(kind, { env: process.env, stdin: await readStdin() }, connections);
    exitCode = outcome.exitCode;
    if (outcome.stdout) await new Promise<void>((resolve) => process.stdout.write(`${outcome.stdout}\n`, () => resolve()));
  } finally {
    await connections.close();
    process.exit(exitCode);
  }
}
