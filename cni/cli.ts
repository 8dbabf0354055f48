/** The process around one CNI invocation: read stdin, run, print, exit. */
import { Connections } from './backend';
import { runCni, type PluginKind } from './skel';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
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
