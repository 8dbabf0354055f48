/**
 * One calico_mesos invocation, from (environment, stdin) to (stdout, exit code): run in-process by
 * the executable, or by the node daemon for one forwarded to it. Whatever happens the answer is
 * one JSON object: `"error": null` and the command's fields on success, a message otherwise.
 *
 * Settings come from the agent's environment, as the isolator passes it whole: ETCD_ENDPOINTS (or
 * ETCD_AUTHORITY), the ETCD_*_FILE certificates, ETCD_PREFIX; this host's name from NODENAME, else
 * /var/lib/calico/nodename, else the host name, as for the CNI plugin and the node daemon; the
 * veths' MTU from the node daemon's file (CALICO_MTU_FILE, /var/lib/calico/mtu); CALICO_NO_POLICY=true
 * when the host enforces no policy.
 */
import type { Connections } from '../shared/connections';
import type { Invocation, Outcome } from '../shared/invocation';
import { etcdSettingsFrom } from '../shared/datastore/settings';
import { InvalidInputError, messageOf } from '../shared/errors';
import { Logger, type Level, type Sink } from '../shared/log';
import { defaultNodename } from '../shared/nodename';
import { DEFAULT_MTU_FILE } from '../shared/routing/workload-mtu';
import { runCommand } from './commands';
import { parseRequest } from './request';

/** The isolator reads at most 40 KiB of answer; an error message is cut well within it. */
const MAX_MESSAGE = 4000;
const LEVELS: readonly Level[] = ['debug', 'info', 'warning', 'error'];

/** The answer for a failure: its message, cut to fit. */
function failure(err: unknown): Outcome {
  const message = messageOf(err);
  return { stdout: JSON.stringify({ error: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message }), exitCode: 1 };
}

/** CALICO_NO_POLICY: "true" when the host enforces no policy (as the daemon's --no-policy). */
function parseNoPolicy(value: string | undefined): boolean {
  if (value === undefined || value === '' || value === 'false') return false;
  if (value === 'true') return true;
  throw new InvalidInputError('CALICO_NO_POLICY', `must be "true" or "false", not ${JSON.stringify(value.slice(0, 40))}`);
}

/** `standalone`: run by calico_mesos itself, not by the node daemon; `forNode` is told the node a command is for. */
export async function runNetmodules(invocation: Invocation, connections: Connections, sinks: readonly Sink[], standalone = false, forNode?: (nodename: string) => void): Promise<Outcome> {
  const levelSetting = invocation.env.CALICO_LOG_LEVEL ?? 'info';
  const log = new Logger(LEVELS.includes(levelSetting as Level) ? (levelSetting as Level) : 'info', sinks, { plugin: 'calico_mesos' });
  try {
    const request = parseRequest(invocation.stdin);
    const node = invocation.env.NODENAME || defaultNodename();
    forNode?.(node);
    const etcd = etcdSettingsFrom({}, invocation.env);
    const [ds, ipam] = await Promise.all([connections.datastore(etcd), connections.ipam(etcd)]);
    const mtuFile = invocation.env.CALICO_MTU_FILE || DEFAULT_MTU_FILE;
    const noPolicy = parseNoPolicy(invocation.env.CALICO_NO_POLICY);
    const result = await runCommand(request, { ds, ipam, node, mtuFile, log: log.with({ command: request.command }), closeWorkloadsFirst: standalone && !noPolicy });
    return { stdout: JSON.stringify({ ...result, error: null }), exitCode: 0 };
  } catch (err) {
    log.error(messageOf(err));
    return failure(err);
  }
}
