/**
 * One CNI invocation, from (environment, stdin) to (stdout, exit code), for either plugin. The
 * executables call it in-process; the node daemon calls it for requests forwarded to it.
 */
import { Logger, fileSink, stderrSink, type Sink } from '../shared/log';
import type { Connections } from '../shared/connections';
import type { Invocation, Outcome } from '../shared/invocation';
import { parseConfig, parseJson, type NetConf } from './config';
import type { CniContext } from './context';
import { NeverCreatedError, parseCommand, parseEnv, type Command, type CniEnv } from './env';
import { toCniError } from './errors';
import { ipamAdd, ipamCheck, ipamDel, ipamGc, datastoreStatus } from './ipam-plugin';
import * as calico from './main-plugin';
import { formatResult, type CniResult } from './result';
import { answerVersion, parseVersion, versionAnswer, type CniVersion } from './version';

export type PluginKind = 'calico' | 'calico-ipam';

type Handler = (ctx: CniContext) => Promise<CniResult | void>;

const HANDLERS: Record<PluginKind, Record<Exclude<Command, 'VERSION'>, Handler>> = {
  calico: { ADD: calico.add, DEL: calico.del, CHECK: calico.check, GC: calico.gc, STATUS: calico.status },
  'calico-ipam': { ADD: ipamAdd, DEL: ipamDel, CHECK: ipamCheck, GC: ipamGc, STATUS: datastoreStatus },
};

export interface RunOptions {
  /** Where log lines go besides the config's log file: stderr for a plugin, the daemon's own for the daemon. */
  readonly sinks?: readonly Sink[];
  /** Run by the plugin itself, not by the node daemon. */
  readonly standalone?: boolean;
  /** Told the node a command is for (the daemon checks it is its own). */
  readonly forNode?: (nodename: string) => void;
}

export async function runCni(kind: PluginKind, invocation: Invocation, connections: Connections, { sinks = [stderrSink], standalone = false, forNode }: RunOptions = {}): Promise<Outcome> {
  let version: CniVersion | undefined;
  let log = new Logger('info', sinks);
  try {
    const command = parseCommand(invocation.env);
    if (command === 'VERSION') return { stdout: versionAnswer(invocation.stdin), exitCode: 0 };
    let env: CniEnv;
    try {
      env = parseEnv(invocation.env);
    } catch (err) {
      if (!(err instanceof NeverCreatedError && command === 'DEL')) throw err;
      log.info(`DEL of something no ADD could have made: nothing to do (${err.message})`);
      return { stdout: '', exitCode: 0 };
    }
    const raw = parseJson(invocation.stdin);
    version = parseVersion(raw.cniVersion);
    const conf = parseConfig(raw, env, invocation.env);
    log = loggerFor(conf, env, kind, sinks);
    forNode?.(conf.nodename);
    log.debug('invoked');
    const result = await HANDLERS[kind][command]({ env, processEnv: invocation.env, conf, log, connections, standalone });
    return { stdout: result ? JSON.stringify(formatResult(result, version)) : '', exitCode: 0 };
  } catch (err) {
    const error = toCniError(err);
    log.error(error.message, { code: error.code });
    // An error before the config was read (the environment's) still answers in the config's version.
    const answer = { cniVersion: version ?? answerVersion(invocation.stdin), code: error.code, msg: error.message, ...(error.details ? { details: error.details } : {}) };
    return { stdout: JSON.stringify(answer), exitCode: 1 };
  }
}

function loggerFor(conf: NetConf, env: CniEnv, kind: PluginKind, base: readonly Sink[]): Logger {
  const sinks = [...base, ...(conf.logFile ? [fileSink(conf.logFile)] : [])];
  return new Logger(conf.logLevel, sinks, { plugin: kind, command: env.command, container: env.containerId || undefined, ifname: env.ifname || undefined });
}

