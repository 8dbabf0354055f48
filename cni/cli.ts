/**
 * The process around one CNI invocation run by node: read stdin, run it here, print, exit. Node
 * runs only when the executable's shell front found no daemon to hand it to (shared/front.sh), or
 * when someone runs the file with node.
 */
import type { Invocation, Outcome } from '../shared/invocation';
import { print, readStdin } from '../shared/stdio';
import { runInProcess } from './in-process';
import type { PluginKind } from './skel';

export async function main(kind: PluginKind): Promise<void> {
  let outcome: Outcome = { stdout: '', exitCode: 1 };
  try {
    const invocation: Invocation = { env: process.env, stdin: await readStdin() };
    outcome = await runInProcess(kind, invocation);
    if (outcome.stdout) print(outcome.stdout);
  } finally {
    process.exit(outcome.exitCode);
  }
}
