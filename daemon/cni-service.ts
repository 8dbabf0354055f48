/**
 * Serves invocations handed over by our executables' shell front (shared/front.sh): the CNI
 * plugins' and calico_mesos'. One request in, one answer out (framed as daemon/forward-framing.ts
 * says); the commands run exactly as in-process, with warm connections.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Connections } from '../shared/connections';
import { runCni, type PluginKind } from '../cni/skel';
import { COMMANDS } from '../netmodules/request';
import { runNetmodules } from '../netmodules/run';
import type { Logger } from '../shared/log';
import { MAX_BODY_BYTES, MAX_CONNECTIONS, REQUEST_TIMEOUT_MS, requestBudget } from '../shared/request-limits';
import { listenOnSocket, removeSocket } from '../shared/unix-socket';
import { REFUSAL, decodeForwarded, encodeAnswer, namesItsSocket } from './forward-framing';

/** The net-modules command of a request, for metrics (one of the five, else "unknown"). */
function netmodulesCommandOf(stdin: string): string {
  try {
    const command = (JSON.parse(stdin) as { command?: unknown }).command;
    return (COMMANDS as readonly unknown[]).includes(command) ? String(command) : 'unknown';
  } catch {
    return 'unknown';
  }
}

export class CniService {
  private readonly server: Server;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Node names of commands that were not this daemon's, each warned about once. */
  private readonly strangers = new Set<string>();

  constructor(
    private readonly socketPath: string,
    private readonly connections: Connections,
    private readonly node: string,
    private readonly log: Logger,
    private readonly served: (call: string, ok: boolean, seconds: number) => void = () => undefined,
  ) {
    // Half-open: the plugin ends its side after the request and still reads the answer.
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.serve(socket));
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  async start(): Promise<void> {
    await listenOnSocket(this.server, this.socketPath);
    this.log.info('serving CNI requests', { socket: this.socketPath });
  }

  private serve(socket: Socket): void {
    const chunks: Buffer[] = [];
    let size = 0;
    // The plugin sends its whole request at once: one that trickles in or never ends is dropped.
    const deadline = setTimeout(() => socket.destroy(), REQUEST_TIMEOUT_MS);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(deadline);
      requestBudget.release(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_BODY_BYTES) return void socket.destroy();
      requestBudget.add(socket, chunk.length, () => socket.destroy());
    });
    socket.on('end', () => {
      clearTimeout(deadline);
      const request = Buffer.concat(chunks).toString('utf8');
      chunks.length = 0;
      const work = this.answer(request).then((answer) => socket.end(answer)).finally(() => requestBudget.release(socket));
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
    });
  }

  private async answer(text: string): Promise<string> {
    const request = decodeForwarded(text);
    // One that names another socket (or none) is node's to run, as the front would have had it.
    if (!request || !namesItsSocket(request)) return REFUSAL;
    const started = process.hrtime.bigint();
    const invocation = { env: request.env, stdin: request.stdin };
    const netmodules = request.kind === 'calico_mesos';
    const forNode = (nodename: string) => this.checkNode(nodename);
    const outcome = netmodules ? await runNetmodules(invocation, this.connections, this.log.sinks, false, forNode) : await runCni(request.kind as PluginKind, invocation, this.connections, { sinks: this.log.sinks, forNode });
    const call = netmodules ? netmodulesCommandOf(request.stdin) : String(request.env.CNI_COMMAND ?? 'unknown').slice(0, 16);
    this.served(`${request.kind} ${call}`, outcome.exitCode === 0, Number(process.hrtime.bigint() - started) / 1e9);
    return encodeAnswer(outcome);
  }

  /**
   * A command for another node's name: its endpoints and blocks are that name's, which this host's
   * GC and routes do not look after. Said once per name: the plugins' `nodename` (or NODENAME)
   * and the daemon's --nodename must be the same, or both left to their default.
   */
  private checkNode(nodename: string): void {
    if (nodename === this.node || this.strangers.has(nodename)) return;
    this.strangers.add(nodename);
    this.log.warning('a command arrived for another node name than this daemon\'s: give the plugins\' config (nodename) and the daemon (--nodename) the same name, or leave both to their default', { commandNode: nodename.slice(0, 100), daemonNode: this.node });
  }

  /** Stops taking requests, lets those in flight finish, removes the socket. */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.allSettled([...this.inFlight]);
    removeSocket(this.socketPath);
  }
}
