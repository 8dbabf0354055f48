import test from 'ava';
import { Datacenter, type TaskPath } from '../../framework/datacenter';
import { SCENARIO_NAMES, runNamed } from '../../framework/scenarios';

// The net-modules framework's scenarios, isolation asserted, on three agents, per path (as
// `npm run framework` runs them): a scenario a path cannot express is skipped, and says why.
let dc: Datacenter;
const paths = new Map<string, TaskPath>();

test.before(async () => {
  dc = await Datacenter.create();
  for (const path of dc.paths()) paths.set(path.name, path);
});
test.after.always(async () => {
  await dc?.destroy();
});

for (const pathName of ['net-modules', 'mesos-cni', 'docker']) {
  for (const name of SCENARIO_NAMES) {
    test.serial(`framework - ${pathName} - ${name}`, async (t) => {
      const outcome = await runNamed(dc, paths.get(pathName)!, name);
      if (outcome.status === 'SKIP') t.log(`skipped: ${outcome.problems.join('; ')}`);
      t.deepEqual(outcome.problems.filter(() => outcome.status === 'FAIL'), []);
    });
  }
}
