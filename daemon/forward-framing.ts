/**
 * The two ways a forwarded invocation reaches the daemon's socket, and each one's answer:
 * - JSON (our node executables, shared/daemon-forward.ts): `{"kind", "env", "stdin"}` in,
 *   `{"stdout", "exitCode"}` out;
 * - shell (calico_mesos run as a script, netmodules/front.sh, which has no JSON encoder): the
 *   kind, NUL, the environment as `env -0` lists it (each entry ended by NUL), NUL, then stdin to
 *   the end; the answer is the exit code's one digit, then stdout.
 * A JSON request starts with "{", which no kind does.
 */
import type { ForwardRequest, ForwardedKind, Outcome } from '../shared/daemon-forward';

export const FORWARDED_KINDS: readonly ForwardedKind[] = ['calico', 'calico-ipam', 'calico_mesos'];

export interface DecodedRequest {
  /** Undefined when the request is not one we serve. */
  readonly request: ForwardRequest | undefined;
  /** The answer to write back, in the request's own framing. */
  encode(outcome: Outcome): string;
  /**
   * The answer to a request we do not serve. The script gets nothing, so that node runs the
   * command and answers with one JSON object whatever happens.
   */
  readonly refusal: string;
}

export function decodeForwarded(text: string): DecodedRequest {
  if (text.startsWith('{')) {
    const encode = (outcome: Outcome) => `${JSON.stringify(outcome)}\n`;
    return { request: fromJson(text), encode, refusal: encode({ stdout: '', exitCode: 1 }) };
  }
  return { request: fromShell(text), encode: shellAnswer, refusal: '' };
}

function fromJson(text: string): ForwardRequest | undefined {
  let request: ForwardRequest;
  try {
    request = JSON.parse(text) as ForwardRequest;
  } catch {
    return undefined;
  }
  const wellFormed = FORWARDED_KINDS.includes(request.kind) && typeof request.stdin === 'string' && typeof request.env === 'object' && request.env !== null && !Array.isArray(request.env);
  return wellFormed ? request : undefined;
}

function fromShell(text: string): ForwardRequest | undefined {
  const kindEnd = text.indexOf('\0');
  const kind = text.slice(0, kindEnd) as ForwardedKind;
  if (kindEnd < 0 || !FORWARDED_KINDS.includes(kind)) return undefined;
  const env: Record<string, string> = {};
  let at = kindEnd + 1;
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
  return { kind, env, stdin: text.slice(at) };
}

/** The script prints what follows the digit, and a newline, as node's print does. */
function shellAnswer(outcome: Outcome): string {
  const code = Number.isInteger(outcome.exitCode) && outcome.exitCode >= 0 && outcome.exitCode <= 9 ? outcome.exitCode : 1;
  return `${code}${outcome.stdout}`;
}
