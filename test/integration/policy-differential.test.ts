/**
 * The policy compiler proved against a reference evaluator of Calico's documented semantics, with
 * real packets through the real table (test/helpers/policy-differential.ts): at least 300 random
 * cases, 0 disagreements. `npm run bench -- policy` runs 10,000.
 */
import test from 'ava';
import { describe, runDifferential } from '../helpers/policy-differential';

test('policy differential - 360 random packets through random policies: the table and the reference agree on every one', async (t) => {
  const seed = Number(process.env.DIFFERENTIAL_SEED ?? 20261202);
  const { cases, delivered, disagreements } = await runDifferential(seed, 8, 45);
  t.log(`seed ${seed}: ${cases} cases, ${delivered} delivered, ${disagreements.length} disagreements`);
  for (const d of disagreements.slice(0, 3)) t.log(describe(d));
  t.true(cases >= 300);
  t.true(delivered > cases / 10 && delivered < cases, 'both verdicts occur');
  t.is(disagreements.length, 0);
});
