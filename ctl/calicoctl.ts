import { CalicoError, messageOf } from '../shared/errors';
import { CtlUsageError } from './errors';
import { run } from './main';

run(process.argv.slice(2), process.env).then(
  ({ out, code }) => {
    process.stdout.write(`${out}\n`, () => process.exit(code));
  },
  (err: unknown) => {
    // Our errors carry a message for the operator; anything else is still shown without a trace.
    process.stderr.write(`calicoctl: ${err instanceof CalicoError ? err.message : messageOf(err)}\n`, () => process.exit(err instanceof CtlUsageError ? 2 : 1));
  },
);
