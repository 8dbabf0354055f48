/**
 * Hands a CNI invocation to the node daemon over its unix socket, when one runs on this host: the
 * daemon holds a warm etcd connection, so the plugin process only starts node and waits. Returns
 * undefined when no daemon answers, and the caller runs the command in-process instead.
 */
// Imported statically: a dynamic import() of it would start node's ESM loader (measured: 8 ms of
// CPU per command), more than net itself costs a VERSION that does not need it.
import { connect } from 'node:net';
import type { Invocation, Outcome, PluginKind } from './skel';

export const DEFAULT_DAEMON_SOCKET = '/var/run/calico/cni.sock';
const CONNECT_TIMEOUT_MS = 500;
/** Longer than any command takes with every etcd call at its deadline. */
const ANSWER_TIMEOUT_MS = 120_000;

export interface ForwardRequest extends Invocation {
  readonly kind: PluginKind;
}

export function forward(socketPath: string, request: ForwardRequest): Promise<Outcome | undefined> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const answer: Buffer[] = [];
    let settled = false;
    const settle = (outcome: Outcome | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // After an answer both sides have ended and the socket closes by itself.
      if (outcome === undefined) socket.destroy();
      resolve(outcome);
    };
    let timer = setTimeout(() => settle(undefined), CONNECT_TIMEOUT_MS);
    socket.on('connect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => settle(undefined), ANSWER_TIMEOUT_MS);
      socket.end(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: Buffer) => answer.push(chunk));
    socket.on('end', () => {
      try {
        const outcome = JSON.parse(Buffer.concat(answer).toString('utf8')) as Outcome;
        settle(typeof outcome.exitCode === 'number' && typeof outcome.stdout === 'string' ? outcome : undefined);
      } catch {
        settle(undefined);
      }
    });
    socket.on('error', () => settle(undefined));
  });
}

/** The socket named by the config's `daemon_socket` ("" turns forwarding off), else the default. */
export function daemonSocketOf(stdin: string): string | undefined {
  try {
    const conf = JSON.parse(stdin) as { daemon_socket?: unknown };
    if (conf.daemon_socket === '') return undefined;
    return typeof conf.daemon_socket === 'string' ? conf.daemon_socket : DEFAULT_DAEMON_SOCKET;
  } catch {
    return DEFAULT_DAEMON_SOCKET;
  }
}
