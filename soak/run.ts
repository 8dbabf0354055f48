/**
 * `npm run soak -- --minutes N [--seed S] [--plant duplicate|leak|orphan]`: the chaos soak
 * (soak/world.ts for its datacenter). Every OPERATION_MS the seed draws an operation (start or
 * stop a task of one of the three kinds, a policy or label change, a pool added or disabled), and
 * every so often a fault (faults.ts, booked by fault-log.ts); the checker (invariants.ts) runs
 * every second; a plant (plants.ts) gives it something to find. Decisions depend on the seed
 * alone, not on how operations turn out, so a seed is one sequence of operations and faults.
 * Progress goes to stderr; the last line on stdout is one JSON object with the figures.
 */
import { parseCommandLine } from '../shared/command-line';
import type { JsonObject } from '../shared/datastore/codec';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultLog } from './fault-log';
import { drawFault, faultKinds, type FaultKind } from './faults';
import { Checker, type Violation } from './invariants';
import { PLANT_KINDS, plantDuplicate, plantLeak, plantOrphan, type PlantKind } from './plants';
import { Random } from '../sim/random';
import { Workloads, type OperationOutcome, type Workload, type WorkloadKind } from './workload';
import { FIRST_POOL, NETWORKS, SoakWorld } from './world';

const OPERATION_MS = 250;
/** Workloads the soak keeps around; starts are likelier below it, stops above. */
const POPULATION = 16;
/** Between a fault's end and the next one's start; OVERLAP_CHANCE of them start while one is on instead. */
const FAULT_GAP_MS = { min: 5000, max: 15_000 };
const OVERLAP_CHANCE = 0.25;
const OVERLAP_GAP_MS = { min: 1000, max: 4000 };
/** No fault starts in the run's last 20 s: what is checked last is checked settled. */
const QUIET_END_MS = 20_000;
const CHECK_MS = 1000;
/** After the last workload is gone: the collectors' passes and the spare blocks' release. */
const FINAL_WAIT_MS = 20_000;
const POLICY = 'soak-policy';

const USAGE = `usage: npm run soak -- [--minutes N] [--seed S] [--plant duplicate|leak|orphan]
  --minutes N  how long the workload and the faults go on (default 1)
  --seed S     an integer from 0 to 2^32-1: the same seed draws the same operations and faults
  --plant K    one fault of the checker's own kind, which the run must then report`;

/** A bad value: said with the usage, exit 2, as parseCommandLine does for a bad flag. */
function refuse(message: string): never {
  process.stderr.write(`soak: ${message}\n${USAGE}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const { values } = parseCommandLine('soak', USAGE, process.argv.slice(2), { minutes: { type: 'string', default: '1' }, seed: { type: 'string' }, plant: { type: 'string' } });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) refuse('--minutes must be a positive number');
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) refuse('--seed must be an integer from 0 to 2^32-1');
  const plant = values.plant as PlantKind | undefined;
  if (plant !== undefined && !PLANT_KINDS.includes(plant)) refuse(`--plant must be one of ${PLANT_KINDS.join(', ')}`);
  const random = new Random(seed);
  const [decisions, faultDraws, checks, cleanups] = [random.fork(), random.fork(), random.fork(), random.fork()];
  const routing = random.chance(0.5) ? 'bird' : 'vxlan';
  const log = (line: string) => process.stderr.write(`[soak ${seed}] ${line}\n`);
  log(`seed ${seed}, routing ${routing}, ${minutes} minutes${plant ? `, planting a ${plant}` : ''}`);

  const world = await SoakWorld.create(routing, log);
  // Interrupted: the world goes all the same (its processes, namespaces and dockerds).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: removing the world`);
      void world.destroy().finally(() => process.exit(130));
    });
  }
  const started = performance.now();
  const now = () => performance.now() - started;
  const operations = new Map<string, { ok: number; failed: number }>();
  const addLatencies: number[] = [];
  const failures: string[] = [];
  const record = (outcome: OperationOutcome) => {
    const counts = operations.get(outcome.kind) ?? { ok: 0, failed: 0 };
    counts[outcome.ok ? 'ok' : 'failed']++;
    operations.set(outcome.kind, counts);
    if (outcome.kind === 'cni-start' && outcome.ok) addLatencies.push(outcome.ms);
    if (!outcome.ok && failures.length < 20) failures.push(`${outcome.kind}: ${outcome.detail?.slice(0, 300)}`);
  };
  const workloads = new Workloads(world, record, now, cleanups, log);
  const planted = new Set<string>();
  const faults = new FaultLog(now);
  const checker = new Checker(world, workloads, checks, () => faults.quietSince(), now, planted);
  const violations = new Map<string, { violation: Violation; count: number; firstAt: number }>();
  const note = (found: readonly Violation[], prefix: string) => {
    for (const violation of found) {
      const key = `${violation.kind} ${violation.detail}`;
      const seen = violations.get(key);
      if (seen) seen.count++;
      else {
        violations.set(key, { violation, count: 1, firstAt: now() });
        log(`${prefix} ${violation.kind}: ${violation.detail}`);
      }
    }
  };

  try {
    await world.ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: POLICY }, spec: policySpec(0) });
    const endAt = minutes * 60_000;
    // The scheduler's own list: what it started and has not stopped, whatever became of it.
    const scheduled: Workload[] = [];
    let pools = 1;
    const scheduler = (async () => {
      for (let tick = 0; now() < endAt; tick++) {
        const due = started + (tick + 1) * OPERATION_MS;
        const starting = scheduled.length < POPULATION ? 0.7 : 0.3;
        const op = decisions.weighted({ start: starting * 10, stop: (1 - starting) * 10, label: 0.6, policy: 0.3, pool: 0.2 });
        if (op === 'start') {
          const agent = decisions.pick(world.agents);
          const kinds: WorkloadKind[] = agent.docker ? ['cni', 'docker', 'netmodules'] : ['cni', 'netmodules'];
          scheduled.push(workloads.start(decisions.pick(kinds), agent, decisions.pick(NETWORKS)));
        } else if (op === 'stop' && scheduled.length > 0) {
          workloads.stop(scheduled.splice(decisions.int(scheduled.length), 1)[0]!);
        } else if (op === 'label' && scheduled.length > 0) {
          void relabel(world, decisions.pick(scheduled), decisions.chance(0.5)).then(record);
        } else if (op === 'policy') {
          void repolicy(world, decisions.int(3)).then(record);
        } else if (op === 'pool') {
          const add = pools < 4 || decisions.chance(0.5);
          void (add ? addPool(world, pools++) : disablePool(world, decisions.between(1, pools - 1))).then(record);
        }
        await sleep(Math.max(0, due - performance.now()));
      }
    })();
    const context = { world, workloads, planted };
    const injector = (async () => {
      const running: Promise<void>[] = [];
      let round: FaultKind[] = [];
      let gapMs = faultDraws.between(FAULT_GAP_MS.min, FAULT_GAP_MS.max);
      for (;;) {
        await sleep(gapMs);
        if (now() >= endAt - QUIET_END_MS) break;
        if (round.length === 0) round = faultDraws.shuffle(faultKinds(world));
        const fault = drawFault(round.shift()!, context, faultDraws);
        const overlap = faultDraws.chance(OVERLAP_CHANCE);
        gapMs = overlap ? faultDraws.between(OVERLAP_GAP_MS.min, OVERLAP_GAP_MS.max) : faultDraws.between(FAULT_GAP_MS.min, FAULT_GAP_MS.max);
        log(`fault: ${fault.detail}${faults.active() > 0 ? ' (while another is on)' : ''}`);
        const done = faults.run(fault).catch((err: unknown) => void log(`fault ${fault.kind} could not be undone cleanly: ${String(err)}`));
        running.push(done);
        // Most faults are alone: the next one is drawn after this one ends; some overlap.
        if (!overlap) await done;
      }
      await Promise.all(running);
    })();
    let planting: Promise<void> | undefined;
    let lastProgress = 0;
    while (now() < endAt) {
      const at = now();
      const recoveringFrom = faults.active() === 0 ? faults.awaitingRecovery() : undefined;
      const found = await checker.check(recoveringFrom).catch((err: unknown) => {
        log(`check failed: ${String(err)}`);
        return { violations: [], recovered: false };
      });
      note(found.violations, 'VIOLATION');
      if (found.recovered && faults.active() === 0) faults.recovered(recoveringFrom!);
      if (plant === 'duplicate' && !planting && at >= endAt / 2) {
        const target = workloads.live().find((w) => w.ips.length > 0);
        if (target) planting = plantDuplicate(world, target).then((what) => void log(`planted: ${what}`));
      }
      if (at - lastProgress >= 10_000) {
        lastProgress = at;
        const done = [...operations.values()].reduce((n, c) => n + c.ok + c.failed, 0);
        log(`${Math.round(at / 1000)} s: ${done} operations, ${workloads.live().length} live, ${faults.total()} faults, ${violations.size} violations`);
      }
      await sleep(Math.max(0, CHECK_MS - (now() - at)));
    }
    await Promise.all([scheduler, injector, planting]);
    log('stopping every workload');
    for (const workload of scheduled.splice(0)) workloads.stop(workload);
    await workloads.settled();
    await sleep(FINAL_WAIT_MS);
    if (plant === 'leak') log(`planted: ${await plantLeak(world)}`);
    if (plant === 'orphan') log(`planted: ${await plantOrphan(world)}`);
    note(await checker.leftovers(), 'LEFT');
    const count = (...kinds: string[]) => [...violations.values()].filter((v) => kinds.includes(v.violation.kind)).length;
    const sorted = [...addLatencies].sort((a, b) => a - b);
    const quantile = (q: number) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!) : null);
    const figures = {
      seed,
      routing,
      minutes,
      ...(plant ? { planted: plant } : {}),
      operations: Object.fromEntries(operations),
      operations_total: [...operations.values()].reduce((n, c) => n + c.ok + c.failed, 0),
      faults: faults.counts(),
      recovery_ms: faults.recoveries(),
      violations: violations.size,
      violation_kinds: Object.fromEntries([...new Set([...violations.values()].map((v) => v.violation.kind))].map((k) => [k, count(k)])),
      duplicates: count('duplicate'),
      leaks: count('leak', 'lost-allocation'),
      orphans: count('orphan'),
      add_ms_p50: quantile(0.5),
      add_ms_p99: quantile(0.99),
      first_failures: failures.slice(0, 5),
      logs: world.logsDir,
    };
    process.stdout.write(`${JSON.stringify(figures)}\n`);
    process.exitCode = violations.size > 0 ? 1 : 0;
  } finally {
    await world.destroy();
  }
}

/** The one policy: it applies to every workload and passes to the profiles, in one of three shapes. */
function policySpec(shape: number): JsonObject {
  const shapes: JsonObject[][] = [[{ action: 'Pass' }], [{ action: 'Deny', protocol: 'TCP', destination: { ports: [9] } }, { action: 'Pass' }], [{ action: 'Pass', source: { selector: 'has(tier)' } }, { action: 'Pass' }]];
  const rules = shapes[shape]!;
  return { order: 10 + shape, selector: 'all()', types: ['Ingress'], ingress: rules };
}

async function repolicy(world: SoakWorld, shape: number): Promise<OperationOutcome> {
  return timed('policy-change', async () => {
    const current = await world.ds.resources.get('GlobalNetworkPolicy', POLICY);
    if (current) await world.ds.resources.update({ ...current, spec: policySpec(shape) });
  });
}

/** A label on a workload's endpoint record set or removed, as an orchestrator's update would. */
async function relabel(world: SoakWorld, workload: Workload, add: boolean): Promise<OperationOutcome> {
  return timed('label-change', async () => {
    if (workload.state !== 'live') return;
    const endpoints = await world.ds.resources.list('WorkloadEndpoint');
    const endpoint = endpoints.find((e) => (e.spec.ipNetworks ?? []).some((n) => n.split('/')[0] === workload.ips[0]));
    if (!endpoint) return;
    const labels = { ...(endpoint.metadata.labels ?? {}) };
    if (add) labels.tier = 'front';
    else delete labels.tier;
    await world.ds.resources.update({ ...endpoint, metadata: { ...endpoint.metadata, labels } });
  });
}

async function addPool(world: SoakWorld, n: number): Promise<OperationOutcome> {
  return timed('pool-add', async () => {
    await world.ipam.createPool(`soak-${n}`, { cidr: `10.${210 + Math.floor(n / 16)}.${(n % 16) * 16}.0/20`, blockSize: 26, vxlanMode: world.routing === 'vxlan' ? 'Always' : 'Never' });
  });
}

async function disablePool(world: SoakWorld, n: number): Promise<OperationOutcome> {
  return timed('pool-disable', async () => {
    const name = n === 0 ? FIRST_POOL.name : `soak-${n}`;
    const pool = await world.ds.resources.get('IPPool', name);
    if (pool && !pool.spec.disabled) await world.ds.resources.update({ ...pool, spec: { ...pool.spec, disabled: true } });
  });
}

async function timed(kind: string, step: () => Promise<void>): Promise<OperationOutcome> {
  const started = performance.now();
  try {
    await step();
    return { kind, ok: true, ms: performance.now() - started };
  } catch (err) {
    return { kind, ok: false, ms: performance.now() - started, detail: String((err as Error).message ?? err) };
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(2);
});
