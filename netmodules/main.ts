/**
 * `calico_mesos`: the executable the net-modules isolator runs as both its `ipam_command` and its
 * `isolator_command`. One JSON request on stdin, exactly one JSON object on stdout whatever
 * happens (the isolator reads only stdout, at most 40 KiB, and ignores the exit code); the exit
 * code says the same (0 or 1). Log lines go to stderr, which the isolator passes to the agent's.
 *
 * The node daemon runs the command when it listens on CALICO_CNI_SOCKET (its --cni-socket;
 * /var/run/calico/cni.sock by default; "" never asks it), with its etcd connections warm: the
 * executable's shell front hands it over (shared/front.sh). Otherwise node runs this, and the
 * command runs here.
 */
import type { Outcome } from '../shared/invocation';
import { print, readStdin } from '../shared/stdio';
import { runInProcess } from './in-process';

const USAGE = `usage: calico_mesos < REQUEST
  The net-modules isolator's ipam_command and isolator_command: one JSON request
  {"command": "allocate"|"reserve"|"release"|"isolate"|"cleanup", "args": {...}} on stdin, one
  JSON answer on stdout ("error": null on success). Environment: ETCD_ENDPOINTS (or
  ETCD_AUTHORITY), ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE, ETCD_PREFIX, NODENAME,
  CALICO_CNI_SOCKET (the node daemon; "" for none), CALICO_LOG_LEVEL.
  -h, --help   this text`;

/** Every etcd call has its own deadline; this bounds the whole command, whatever happens. */
const COMMAND_DEADLINE_MS = 120_000;

function finish(outcome: Outcome): never {
  print(outcome.stdout);
  process.exit(outcome.exitCode);
}

/** Without the core loaded: what a failure before or around the command answers. */
function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  finish({ stdout: JSON.stringify({ error: message.slice(0, 4000) }), exitCode: 1 });
}

async function main(): Promise<never> {
  const args = process.argv.slice(2);
  if (args.length === 1 && (args[0] === '--help' || args[0] === '-h')) finish({ stdout: USAGE, exitCode: 0 });
  if (args.length > 0) {
    // Whoever runs it reads stdout: the refusal is a JSON answer there too, the usage goes to stderr.
    process.stderr.write(`${USAGE}\n`);
    finish({ stdout: JSON.stringify({ error: `calico_mesos takes no arguments (got ${JSON.stringify(args.join(' ').slice(0, 200))}); the request comes on stdin` }), exitCode: 2 });
  }
  finish(await runInProcess({ env: process.env, stdin: await readStdin() }));
}

setTimeout(() => fail(new Error(`the command did not finish within ${COMMAND_DEADLINE_MS / 1000} s`)), COMMAND_DEADLINE_MS).unref();
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
main().catch(fail);
