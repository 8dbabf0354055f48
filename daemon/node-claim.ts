/**
 * One node daemon per node name. Two daemons with one name would each write the Node's address,
 * and traffic to that node's workloads would follow whichever wrote last. So a daemon holds its
 * node's key in etcd (shared/datastore: a lease kept alive while it runs, gone soon after it dies),
 * with who it is: this machine and network namespace, which a restarted daemon on the same host
 * recognises as its own, and the address, pid and time for the message another one gets.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Datastore, Entry } from '../shared/datastore';
import { CalicoError, messageOf } from '../shared/errors';
import type { Logger } from '../shared/log';

/** Seconds a dead daemon's claim outlives it; a live one renews it every third of that. */
const TTL_SECONDS = 10;
const RETRY_MS = { first: 1000, max: 10_000 };
/** How long start-up waits for a first answer before serving anyway (etcd may be away at boot). */
const FIRST_ANSWER_MS = 2000;

export class NodeNameTakenError extends CalicoError {
  readonly code = 'NODE_NAME_TAKEN';
}

interface Holder {
  readonly host: string;
  readonly address?: string;
  readonly pid: number;
  readonly since: string;
}

/** This host, as a restarted daemon on it would name it again (and no other host would). */
function thisHost(): string {
  let machine = 'unknown-machine';
  try {
    machine = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    // no machine id: the network namespace alone tells hosts apart
  }
  return `${machine}/netns:${statSync('/proc/self/ns/net').ino}`;
}

function holderOf(entry: Entry): Holder | undefined {
  try {
    return JSON.parse(entry.value) as Holder;
  } catch {
    return undefined;
  }
}

export class NodeClaim {
  private readonly me: Holder;
  private release: (() => Promise<void>) | undefined;
  private stopped = false;
  private markHeld: () => void = () => undefined;
  /** Resolves once the name is held: what writes as this node (its Node record) waits for it. */
  readonly held = new Promise<void>((resolve) => (this.markHeld = resolve));

  constructor(
    private readonly datastore: () => Promise<Datastore>,
    private readonly node: string,
    address: string | undefined,
    private readonly log: Logger,
    /** Told when another live daemon holds the name: the daemon stops. */
    private readonly onTaken: (err: NodeNameTakenError) => void,
  ) {
    this.me = { host: thisHost(), ...(address ? { address } : {}), pid: process.pid, since: new Date().toISOString() };
  }

  /**
   * Claims the name: resolves once it is held; rejects (NodeNameTakenError) when another live
   * daemon has it; resolves too when etcd gives no answer soon, and goes on trying in the background
   * (the daemon serves this host meanwhile; `held` waits).
   */
  async start(): Promise<void> {
    const first = this.claim().catch((err: unknown) => {
      if (err instanceof NodeNameTakenError) throw err;
      this.retry(RETRY_MS.first, err);
    });
    const soon = new Promise<void>((resolve) => setTimeout(resolve, FIRST_ANSWER_MS).unref());
    await Promise.race([first, soon]);
    // A refusal that comes later still stops the daemon.
    first.catch((err: NodeNameTakenError) => this.onTaken(err));
  }

  private async claim(): Promise<void> {
    const ds = await this.datastore();
    const outcome = await ds.kv.hold(ds.keys.nodeDaemon(this.node), JSON.stringify(this.me), TTL_SECONDS, (value) => {
      try {
        return (JSON.parse(value) as Holder).host === this.me.host;
      } catch {
        return false;
      }
    }, (reason) => {
      // etcd was away longer than the lease: claim again once it answers.
      this.release = undefined;
      this.retry(RETRY_MS.first, new Error(reason));
    });
    if ('heldBy' in outcome) {
      const holder = holderOf(outcome.heldBy);
      const who = holder ? `the daemon at ${holder.address ?? holder.host} (pid ${holder.pid}, since ${holder.since})` : 'another daemon';
      throw new NodeNameTakenError(`node name "${this.node}" is held by ${who}: give this host another --nodename (and its CNI config the same nodename), or stop that daemon`);
    }
    this.release = outcome.held.release;
    this.markHeld();
    if (this.stopped) await this.stop();
  }

  private retry(delayMs: number, cause: unknown): void {
    if (this.stopped) return;
    this.log.warning('cannot claim this node\'s name yet; retrying', { error: messageOf(cause), retryInMs: delayMs });
    setTimeout(() => {
      this.claim().catch((err: unknown) => {
        if (err instanceof NodeNameTakenError) this.onTaken(err);
        else this.retry(Math.min(delayMs * 2, RETRY_MS.max), err);
      });
    }, delayMs).unref();
  }

  /** Gives the name back at once (a clean stop), so that a daemon elsewhere may take it. */
  async stop(): Promise<void> {
    this.stopped = true;
    const release = this.release;
    this.release = undefined;
    await release?.();
  }
}
