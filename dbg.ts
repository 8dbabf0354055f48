import { runDifferential, describe } from '/work/main/test/helpers/policy-differential';
import { writeFileSync } from 'node:fs';
for (const seed of process.argv.slice(2).map(Number)) {
  const { cases, delivered, disagreements } = await runDifferential(seed, 100, 100);
  if (disagreements.length) writeFileSync(`/tmp/dis-${seed}.json`, disagreements.map(describe).join('\n=====\n'));
  console.log(seed, cases, delivered, disagreements.length);
}
