/**
 * The chaos soak as CI runs it (`npm run soak`, soak/run.ts): one minute with a fixed seed, in
 * which every invariant holds; and each `--plant` caught, so that the checker's zeros mean
 * something.
 */
import test from 'ava';
import { execFile } from 'node:child_process';

/** A seed whose first minute has faults of several kinds (routing: VXLAN; the 30-minute run of the README has BIRD). */
const SEED = 11;

interface SoakRun {
  readonly code: number;
  readonly figures: Record<string, any>;
  readonly stderr: string;
}

function soak(args: readonly string[]): Promise<SoakRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'soak/run.ts', ...args], { maxBuffer: 64 << 20, timeout: 10 * 60_000 }, (err, stdout, stderr) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      let figures: Record<string, any> = {};
      try {
        figures = JSON.parse(last) as Record<string, any>;
      } catch {
        // No figures: the run itself failed; stderr says why.
      }
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, figures, stderr });
    });
  });
}

test.serial('soak - one minute of tasks of the three kinds, policy, label and pool changes while faults strike: not one violation, nothing left', async (t) => {
  t.timeout(8 * 60_000);
  const run = await soak(['--minutes', '1', '--seed', String(SEED)]);
  const why = `${JSON.stringify(run.figures)}\n${run.stderr.slice(-6000)}`;
  t.is(run.figures.violations, 0, why);
  t.is(run.code, 0, why);
  t.true(run.figures.operations_total >= 150, why);
  for (const kind of ['cni-start', 'docker-start', 'netmodules-start']) t.true(run.figures.operations[kind]?.ok > 0, `${kind}: ${why}`);
  t.true(Object.keys(run.figures.faults).length >= 2, why);
});

const FIGURE_OF_PLANT = { duplicate: 'duplicates', leak: 'leaks', orphan: 'orphans' } as const;

// One plant run at a time: three worlds at once load the machine enough to slow the suite's other files.
for (const [plant, figure] of Object.entries(FIGURE_OF_PLANT)) {
  test.serial(`soak - --plant ${plant}: the checker counts it (${figure} >= 1) and the run fails`, async (t) => {
    t.timeout(6 * 60_000);
    const run = await soak(['--minutes', '0.25', '--seed', String(SEED), '--plant', plant]);
    const why = `${JSON.stringify(run.figures)}\n${run.stderr.slice(-4000)}`;
    t.is(run.figures.planted, plant, why);
    t.true(run.figures[figure] >= 1, why);
    t.true(run.figures.violations >= 1, why);
    t.is(run.code, 1, why);
  });
}
