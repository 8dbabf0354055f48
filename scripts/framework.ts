/**
 * `npm run framework`: the net-modules test framework's scenarios, with isolation asserted, on a
 * simulated datacenter of three Mesos agents and three Docker agents, over each path a task can
 * take (net-modules, Mesos CNI, Docker; framework/). One line per
 * scenario and path (PASS, FAIL with what failed, SKIP when the path cannot express it), then the
 * totals; exit 1 when any failed.
 */
import { Datacenter } from '../framework/datacenter';
import { runFramework } from '../framework/scenarios';

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

const dc = await Datacenter.create();
let outcomes;
try {
  outcomes = await runFramework(dc, (o) => {
    console.log(`${o.status.padEnd(4)}  ${o.path.padEnd(11)}  ${o.scenario}${o.problems.length ? `: ${o.problems.join('; ')}` : ''}`);
  });
} finally {
  await dc.destroy();
}
const count = (status: string) => outcomes.filter((o) => o.status === status).length;
console.log(`${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped (a path that cannot express the scenario)`);
process.exit(count('FAIL') > 0 ? 1 : 0);
