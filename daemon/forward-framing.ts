/**
 * How an invocation of one of our executables reaches the daemon's socket from their shell front
 * (shared/front.sh, which has no JSON encoder), and its answer:
 * - in: the kind, NUL, the socket path the front asked, NUL, the environment as `env -0` lists it
 *   (each entry ended by NUL), NUL, then stdin to the end;
 * - out: the exit code's one digit, stdout, then ANSWER_END, so that an answer cut short (the daemon
 *   died while writing it) is told from a whole one.
 */
import { DEFAULT_DAEMON_SOCKET, type ForwardedKind, type Invocation, type Outcome } from '../shared/invocation';
import { checkJsonDepth } from '../shared/json';

export const FORWARDED_KINDS: readonly ForwardedKind[] = ['calico', 'calico-ipam', 'calico_mesos'];

/** Ends every answer. Printable, with nothing the shell would read inside single quotes. */
export const ANSWER_END = '<end of the calico daemon answer>';

export interface ForwardRequest extends Invocation {
  readonly kind: ForwardedKind;
  /** The socket the front connected to: the daemon serves only invocations that name it. */
  readonly socket: string;
}

/** The request, or undefined when it is not one we serve (the front then runs node). */
export function decodeForwarded(text: string): ForwardRequest | undefined {
  const kindEnd = text.indexOf('\0');
  const kind = text.slice(0, kindEnd) as ForwardedKind;
  if (kindEnd < 0 || !FORWARDED_KINDS.includes(kind)) return undefined;
  const socketEnd = text.indexOf('\0', kindEnd + 1);
  if (socketEnd < 0) return undefined;
  const socket = text.slice(kindEnd + 1, socketEnd);
  const env: Record<string, string> = {};
  let at = socketEnd + 1;
  for (;;) {
    const end = text.indexOf('\0', at);
    if (end < 0) return undefined;
    const entry = text.slice(at, end);
    at = end + 1;
    // An empty entry ends the environment (a real one always has "=").
    if (entry === '') break;
    const equals = entry.indexOf('=');
    if (equals <= 0) return undefined;
    env[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  return { kind, socket, env, stdin: text.slice(at) };
}

/** The front prints what follows the digit, and a newline, as node's print does. */
export function encodeAnswer(outcome: Outcome): string {
  const code = Number.isInteger(outcome.exitCode) && outcome.exitCode >= 0 && outcome.exitCode <= 9 ? outcome.exitCode : 1;
  return `${code}${outcome.stdout}${ANSWER_END}`;
}

/** The answer to a request we do not serve: nothing, so that node runs the command. */
export const REFUSAL = '';

/**
 * Whether the invocation names the socket it came through, read as node would read it:
 * calico_mesos' CALICO_CNI_SOCKET, else a CNI config's top-level daemon_socket ("" or not a
 * string: none), else the default. The front reads it with the shell's means; a config that is no
 * JSON names nothing, and its command's own answer says what is wrong.
 */
export function namesItsSocket(request: ForwardRequest): boolean {
  if (request.kind === 'calico_mesos') return (request.env.CALICO_CNI_SOCKET ?? DEFAULT_DAEMON_SOCKET) === request.socket;
  let conf: { daemon_socket?: unknown } | null;
  try {
    checkJsonDepth(request.stdin, 'stdin');
    conf = JSON.parse(request.stdin) as { daemon_socket?: unknown } | null;
  } catch {
    return true;
  }
  const named = conf?.daemon_socket;
  return named === undefined ? request.socket === DEFAULT_DAEMON_SOCKET : named === request.socket;
}
