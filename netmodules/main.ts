/**
 * `calico_mesos`: the executable the net-modules isolator runs as both its `ipam_command` and its
 * `isolator_command`. One JSON request on stdin, exactly one JSON object on stdout whatever
 * happens (the isolator reads only stdout, at most 40 KiB, and ignores the exit code): `"error":
 * null` on success, a message otherwise; the exit code says the same (0 or 1). Log lines go to
 * stderr, which the isolator passes to the agent's.
 *
 * Settings come from the agent's environment, as the isolator passes it whole: ETCD_ENDPOINTS (or
 * ETCD_AUTHORITY), the ETCD_*_FILE certificates, ETCD_PREFIX; this host's name from NODENAME, else
 * /var/lib/calico/nodename, else the host name, as for the CNI plugin and the node daemon.
 */
import { readSync, writeSync } from 'node:fs';
import { Connections } from '../shared/connections';
import { etcdSettingsFrom } from '../shared/datastore/settings';
import { messageOf } from '../shared/errors';
import { Logger, stderrSink, type Level } from '../shared/log';
import { defaultNodename } from '../shared/nodename';
import { runCommand } from './commands';
import { MAX_REQUEST_BYTES, parseRequest } from './request';

/** The isolator reads at most this much of the answer; an error message is cut well within it. */
const MAX_MESSAGE = 4000;
/** Every etcd call has its own deadline; this bounds the whole command, whatever happens. */
const COMMAND_DEADLINE_MS = 120_000;
const LEVELS: readonly Level[] = ['debug', 'info', 'warning', 'error'];

/** Stdin to its end, or one byte past the largest request (enough to refuse it). */
function readRequest(): string {
  const chunks: Buffer[] = [];
  let total = 0;
  const buffer = Buffer.alloc(64 << 10);
  while (total <= MAX_REQUEST_BYTES) {
    let n: number;
    try {
      n = readSync(0, buffer, 0, buffer.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      if ((err as NodeJS.ErrnoException).code === 'EOF') break;
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, n)));
    total += n;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function answer(body: Record<string, unknown>, exitCode: number): never {
  const bytes = Buffer.from(`${JSON.stringify(body)}\n`);
  for (let at = 0; at < bytes.length; ) {
    try {
      at += writeSync(1, bytes, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') break;
    }
  }
  process.exit(exitCode);
}

function fail(err: unknown): never {
  const message = messageOf(err);
  answer({ error: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message }, 1);
}

async function main(): Promise<never> {
  const levelSetting = process.env.CALICO_LOG_LEVEL ?? 'info';
  const log = new Logger(LEVELS.includes(levelSetting as Level) ? (levelSetting as Level) : 'info', [stderrSink], { plugin: 'calico_mesos' });
  const request = parseRequest(readRequest());
  const node = process.env.NODENAME || defaultNodename();
  const etcd = etcdSettingsFrom({});
  const connections = new Connections();
  try {
    const [ds, ipam] = await Promise.all([connections.datastore(etcd), connections.ipam(etcd)]);
    const result = await runCommand(request, { ds, ipam, node, log: log.with({ command: request.command }) });
    answer({ ...result, error: null }, 0);
  } finally {
    await connections.close();
  }
}

setTimeout(() => fail(new Error(`the command did not finish within ${COMMAND_DEADLINE_MS / 1000} s`)), COMMAND_DEADLINE_MS).unref();
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
main().catch(fail);
