/**
 * Felix's job, for this host: keeps the `inet calico` nftables table equal to what the datastore
 * says about this host's endpoints and the policies, profiles and endpoints they refer to.
 *
 * Before anything is read, the table's fixed part is made sure of (shared/policy/ruleset.ts): from
 * then on every workload interface is closed until its endpoint is programmed, whatever etcd does.
 * A record that stops checking out keeps its last good version in force, or is quarantined
 * (shared/policy/records.ts); each is logged once per version, with its key.
 *
 * A resync reads every policy-related record at one etcd revision, computes the whole table and
 * replaces ours in one nft transaction; a watch from that revision then feeds each change to the
 * calculator, and the names it touched are programmed (one transaction per batch of changes, a
 * few milliseconds apart). A resync happens at start, when etcd ends the watch (compaction), when
 * a change cannot be programmed, and periodically. While etcd is away, the rules programmed last
 * stay in force; nothing is ever removed for lack of an answer.
 */
import type { Datastore, WatchHandle } from '../shared/datastore';
import { applyNftScript } from '../shared/dataplane/nftables';
import { installPolicyTable, removePolicyTable } from '../shared/dataplane/policy-table';
import { setReversePathCheck } from '../shared/dataplane/workload';
import { messageOf } from '../shared/errors';
import type { Logger } from '../shared/log';
import type { MalformedRecordLog } from './malformed-records';
import { PolicyCalculator, type ProtectedService } from '../shared/policy/calculator';
import { POLICY_KINDS, applyRecord } from '../shared/policy/records';
import { Ruleset, copyRuleset, planChanges, renderTable } from '../shared/policy/ruleset';

/** Changes that arrive within this long of each other are programmed together. */
const BATCH_MS = 10;
const RETRY_MS = { first: 1000, max: 30_000 };

export interface PolicyKeeperSettings {
  readonly node: string;
  readonly resyncMs: number;
  /** What workloads may never reach (the datastore, this daemon's metrics). */
  readonly protectedServices: readonly ProtectedService[];
}

export interface PolicySyncReport {
  readonly kind: 'full' | 'changes';
  readonly ok: boolean;
  readonly seconds: number;
  readonly rules: number;
}

export class PolicyKeeper {
  private calculator: PolicyCalculator;
  private programmed = new Ruleset();
  /**
   * One watch on every resource (records of other kinds are skipped). One per policy kind would
   * spare it other kinds' events, but after a compaction etcd ends them all at once, and the
   * etcd3 library throws, uncaught, when a watch it is cancelling is ended by etcd meanwhile.
   */
  private watch: WatchHandle | undefined;
  /** Bumped by every resync: events of an older watch are ignored. */
  private generation = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Programming is one thing at a time. */
  private work: Promise<void> = Promise.resolve();
  /** Interfaces whose reverse-path check is off (their endpoints may send from more prefixes). */
  private spoofing = new Set<string>();

  constructor(
    private readonly datastore: () => Promise<Datastore>,
    private readonly settings: PolicyKeeperSettings,
    private readonly log: Logger,
    private readonly malformed: MalformedRecordLog,
    private readonly report: (report: PolicySyncReport) => void = () => undefined,
  ) {
    this.calculator = this.newCalculator();
  }

  /**
   * Makes sure of the table's fixed part (every workload closed until programmed), then reads the
   * datastore in the background. Awaited before anything can wire a workload.
   */
  async start(): Promise<void> {
    try {
      await installPolicyTable();
    } catch (err) {
      this.log.error('cannot install the policy table; workloads stay unprotected until it can be', { error: messageOf(err) });
    }
    this.scheduleResync(0, 'start');
  }

  private newCalculator(): PolicyCalculator {
    const calculator = new PolicyCalculator(this.settings.node);
    calculator.setProtectedServices(this.settings.protectedServices);
    return calculator;
  }

  /** Turns policy off on this host: our table goes (and only ours). */
  static async remove(log: Logger): Promise<void> {
    await removePolicyTable().catch((err: unknown) => log.warning('could not remove the policy table', { error: messageOf(err) }));
  }

  private scheduleResync(delayMs: number, reason: string, retryIn = RETRY_MS.first): void {
    if (this.stopped) return;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => {
      this.work = this.work.then(() => this.resync(reason, retryIn));
    }, delayMs);
  }

  private async resync(reason: string, retryIn: number): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    await this.closeWatch();
    const started = performance.now();
    try {
      const ds = await this.datastore();
      const revision = await ds.kv.revision();
      const calculator = this.newCalculator();
      let skipped = 0;
      for (const kind of POLICY_KINDS) {
        for await (const page of ds.kv.pages(ds.keys.resourcePrefix(kind), { revision })) {
          for (const entry of page) skipped += this.apply(calculator, ds, entry.key, entry.value, this.calculator) ? 0 : 1;
        }
      }
      calculator.takeTouched();
      await applyNftScript('program the policy table', renderTable(calculator.ruleset));
      this.calculator = calculator;
      this.programmed = copyRuleset(calculator.ruleset);
      await this.keepReversePathChecks();
      this.watch = await ds.kv.watchPrefix(ds.keys.resourcesRoot, (event) => this.onEvent(generation, ds, event.key, event.type === 'put' ? event.value : undefined), revision, (why) => {
        if (generation !== this.generation) return;
        this.log.warning('the policy watch ended; resyncing', { reason: why });
        this.scheduleResync(0, 'watch lost');
      });
      // Stopped while this resync ran: the watch it just made goes too.
      if (this.stopped) return void (await this.closeWatch());
      const seconds = (performance.now() - started) / 1000;
      this.report({ kind: 'full', ok: true, seconds, rules: ruleCount(calculator.ruleset) });
      this.log.info('policy programmed', { reason, endpoints: calculator.localEndpointCount, rules: ruleCount(calculator.ruleset), skipped, ms: Math.round(seconds * 1000) });
      this.scheduleResync(this.settings.resyncMs, 'periodic');
    } catch (err) {
      this.report({ kind: 'full', ok: false, seconds: (performance.now() - started) / 1000, rules: ruleCount(this.programmed) });
      this.log.warning('cannot program policy yet; the rules programmed last stay in force', { error: messageOf(err), retryInMs: retryIn });
      this.scheduleResync(retryIn, reason, Math.min(retryIn * 2, RETRY_MS.max));
    }
  }

  /**
   * Applies one record; false when it is malformed (it is then contained, see records.ts, and
   * logged with its key, once).
   */
  private apply(calculator: PolicyCalculator, ds: Datastore, key: string, value: string | undefined, previous?: PolicyCalculator): boolean {
    try {
      applyRecord(calculator, ds.keys, key, value, previous);
      this.malformed.cleared(key);
      return true;
    } catch (err) {
      this.malformed.skipped(key, messageOf(err), { outcome: (err as { outcome?: string }).outcome });
      return false;
    }
  }

  private onEvent(generation: number, ds: Datastore, key: string, value: string | undefined): void {
    if (generation !== this.generation || this.stopped) return;
    this.apply(this.calculator, ds, key, value);
    if (this.batchTimer) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.work = this.work.then(() => this.programChanges(generation));
    }, BATCH_MS);
  }

  /** Turns the kernel's reverse-path check off exactly on the interfaces allowed to send from more prefixes. */
  private async keepReversePathChecks(): Promise<void> {
    const wanted = this.calculator.spoofingInterfaces();
    const changes: [string, boolean][] = [...wanted].filter((i) => !this.spoofing.has(i)).map((i) => [i, false]);
    changes.push(...[...this.spoofing].filter((i) => !wanted.has(i)).map((i): [string, boolean] => [i, true]));
    for (const [ifname, strict] of changes) {
      await setReversePathCheck(ifname, strict).catch((err: unknown) => this.log.warning('cannot set the reverse-path check', { interface: ifname, strict, error: messageOf(err) }));
    }
    this.spoofing = wanted;
  }

  private async programChanges(generation: number): Promise<void> {
    if (generation !== this.generation || this.stopped) return;
    const touched = this.calculator.takeTouched();
    if (touched.empty) return;
    const started = performance.now();
    try {
      const plan = planChanges(this.programmed, this.calculator.ruleset, touched);
      await applyNftScript('update the policy table', plan.script);
      plan.commit();
      await this.keepReversePathChecks();
      const seconds = (performance.now() - started) / 1000;
      this.report({ kind: 'changes', ok: true, seconds, rules: ruleCount(this.programmed) });
      this.log.debug('policy changes programmed', { endpoints: this.calculator.localEndpointCount, ms: Math.round(seconds * 1000) });
    } catch (err) {
      // What the kernel holds is no longer known for sure: write the whole table again.
      this.report({ kind: 'changes', ok: false, seconds: (performance.now() - started) / 1000, rules: ruleCount(this.programmed) });
      this.log.warning('a policy change could not be programmed; resyncing', { error: messageOf(err) });
      this.scheduleResync(0, 'failed change');
    }
  }

  private async closeWatch(): Promise<void> {
    const watch = this.watch;
    this.watch = undefined;
    await watch?.close();
  }

  /** Stops following the datastore; the table stays, so isolation holds while the daemon is away. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.batchTimer);
    clearTimeout(this.resyncTimer);
    await this.closeWatch();
    await this.work;
  }
}

function ruleCount(ruleset: Ruleset): number {
  let rules = 0;
  for (const chain of ruleset.chains.values()) rules += chain.length;
  return rules;
}
