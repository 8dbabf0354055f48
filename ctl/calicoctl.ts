import { subscribe } from 'node:diagnostics_channel';
import { malformedRecords } from '../shared/diagnostics';
import { CalicoError, messageOf } from '../shared/errors';
import { CtlUsageError } from './errors';
import { run } from './main';

// A record a command skipped because it cannot be read is said once, on stderr, with its key.
const told = new Set<string>();
subscribe(malformedRecords.name, (message) => {
  const { key, error } = message as { key: string; error: string };
  if (told.has(key)) return;
  told.add(key);
  process.stderr.write(`calicoctl: skipped a record that cannot be read: ${error}\n`);
});

run(process.argv.slice(2), process.env).then(
  ({ out, code }) => {
    process.stdout.write(`${out}\n`, () => process.exit(code));
  },
  (err: unknown) => {
    // Our errors carry a message for the operator; anything else is still shown without a trace.
    process.stderr.write(`calicoctl: ${err instanceof CalicoError ? err.message : messageOf(err)}\n`, () => process.exit(err instanceof CtlUsageError ? 2 : 1));
  },
);
