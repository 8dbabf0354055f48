/** The CNI_* environment, checked against the spec's rules; errors name the variable (code 4). */
import { interfaceNameProblem } from '../shared/dataplane/names';
import { CniCode, CniError } from './errors';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Command = (typeof COMMANDS)[number];

export interface CniEnv {
  readonly command: Command;
  readonly containerId: string;
  readonly netns: string | undefined;
  readonly ifname: string;
  readonly args: ReadonlyMap<string, string>;
  readonly path: readonly string[];
}

/** CNI_ARGS keys we understand; anything else is refused unless IgnoreUnknown is set. */
const KNOWN_ARGS = new Set(['IgnoreUnknown', 'IP', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID']);
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/**
 * Container IDs runtimes use are 36 (Mesos) to 64 (Docker) characters; the bound keeps every name
 * built from one (handle, endpoint record) within etcd's and our limits.
 */
export const MAX_CONTAINER_ID = 256;

function invalid(variable: string, reason: string): CniError {
  return new CniError(CniCode.InvalidEnvironment, `invalid ${variable}: ${reason}`);
}

/**
 * A container ID or interface name that no ADD accepts: nothing can exist under it, so a DEL of
 * it succeeds (the spec: DEL of what is gone succeeds) instead of failing forever.
 */
export class NeverCreatedError extends CniError {
  constructor(variable: string, reason: string) {
    super(CniCode.InvalidEnvironment, `invalid ${variable}: ${reason}`);
  }
}

export function parseCommand(env: NodeJS.ProcessEnv): Command {
  const command = env.CNI_COMMAND;
  if (!command) throw invalid('CNI_COMMAND', 'it is not set (one of ADD, DEL, CHECK, VERSION, GC, STATUS)');
  if (!(COMMANDS as readonly string[]).includes(command)) throw invalid('CNI_COMMAND', `"${command}" is not one of ${COMMANDS.join(', ')}`);
  return command as Command;
}

/** The variables the command needs, each checked; VERSION, GC and STATUS need none beyond CNI_COMMAND. */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = parseCommand(env);
  const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  const missing: string[] = [];
  const need = (name: string, required: boolean): string | undefined => {
    const value = env[name];
    if (!value && required) missing.push(name);
    return value || undefined;
  };
  const containerId = need('CNI_CONTAINERID', perContainer) ?? '';
  const netns = need('CNI_NETNS', command === 'ADD' || command === 'CHECK');
  const ifname = need('CNI_IFNAME', perContainer) ?? '';
  const path = need('CNI_PATH', command === 'ADD' || command === 'CHECK');
  if (missing.length > 0) throw invalid(missing.join(', '), `required for ${command} but not set`);

  if (perContainer && containerId.length > MAX_CONTAINER_ID) {
    throw new NeverCreatedError('CNI_CONTAINERID', `it is ${containerId.length} characters long, more than ${MAX_CONTAINER_ID}`);
  }
  if (perContainer && !CONTAINER_ID.test(containerId)) {
    throw new NeverCreatedError('CNI_CONTAINERID', `"${containerId}" must start with a letter or digit and hold only letters, digits, _ . -`);
  }
  const ifnameProblem = perContainer ? interfaceNameProblem(ifname) : undefined;
  if (ifnameProblem) throw new NeverCreatedError('CNI_IFNAME', ifnameProblem);
  if (netns !== undefined && !netns.startsWith('/')) throw invalid('CNI_NETNS', `"${netns}" is not an absolute path`);
  return { command, containerId, netns, ifname, args: parseArgs(env.CNI_ARGS ?? ''), path: (path ?? '').split(':').filter(Boolean) };
}

/** `K=V;K=V`; unknown keys are an error unless `IgnoreUnknown=1` (or true). */
export function parseArgs(text: string): Map<string, string> {
  const args = new Map<string, string>();
  if (text === '') return args;
  for (const pair of text.split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalid('CNI_ARGS', `"${pair}" is not KEY=VALUE`);
    args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const ignore = /^(1|true)$/i.test(args.get('IgnoreUnknown') ?? '');
  const unknown = [...args.keys()].filter((k) => !KNOWN_ARGS.has(k));
  if (unknown.length > 0 && !ignore) throw invalid('CNI_ARGS', `unknown key(s) ${unknown.join(', ')} (set IgnoreUnknown=1 to allow them)`);
  return args;
}
