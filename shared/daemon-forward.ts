/**
 * Hands an invocation of one of our executables (the CNI plugins, calico_mesos) to the node
 * daemon over its unix socket, when one runs on this host: the daemon holds a warm etcd
 * connection, so the executable's process only starts node and waits. Returns undefined when no
 * daemon answers, and the caller runs the command in-process instead.
 */
import { rawStreams, type RawStreams } from './raw-streams';

/** What an executable was started with. */
export interface Invocation {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: string;
}

/** What it prints, and its exit code. */
export interface Outcome {
  readonly stdout: string;
  readonly exitCode: number;
}

/** The executables whose commands the daemon runs. */
export type ForwardedKind = 'calico' | 'calico-ipam' | 'calico_mesos';

export const DEFAULT_DAEMON_SOCKET = '/var/run/calico/cni.sock';
const TIMEOUTS = {
  connectMs: 500,
  /** Longer than any command takes with every etcd call at its deadline. */
  answerMs: 120_000,
};

export interface ForwardRequest extends Invocation {
  readonly kind: ForwardedKind;
}

/** Through the raw streams where they are verified, else through node's `net`. */
export async function forward(socketPath: string, request: ForwardRequest, via: RawStreams | 'net' = rawStreams() ?? 'net'): Promise<Outcome | undefined> {
  const message = `${JSON.stringify(request)}\n`;
  const answer = via === 'net' ? await exchangeThroughNet(socketPath, message) : await via.exchange(socketPath, message, TIMEOUTS);
  if (answer === undefined) return undefined;
  try {
    const outcome = JSON.parse(answer.toString('utf8')) as Outcome;
    return typeof outcome.exitCode === 'number' && typeof outcome.stdout === 'string' ? outcome : undefined;
  } catch {
    return undefined;
  }
}

async function exchangeThroughNet(socketPath: string, message: string): Promise<Buffer | undefined> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const answer: Buffer[] = [];
    let settled = false;
    const settle = (outcome: Buffer | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // After an answer both sides have ended and the socket closes by itself.
      if (outcome === undefined) socket.destroy();
      resolve(outcome);
    };
    let timer = setTimeout(() => settle(undefined), TIMEOUTS.connectMs);
    socket.on('connect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => settle(undefined), TIMEOUTS.answerMs);
      socket.end(message);
    });
    socket.on('data', (chunk: Buffer) => answer.push(chunk));
    socket.on('end', () => settle(Buffer.concat(answer)));
    socket.on('error', () => settle(undefined));
  });
}
