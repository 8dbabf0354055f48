/**
 * Command lines of our executables (the plugins aside, which speak CNI): `--help`/`-h` prints the
 * usage and exits 0; an unknown flag or a missing value prints the usage and exits 2, as tools do.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { messageOf } from './errors';

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseCommandLine<O extends Options>(name: string, usage: string, argv: readonly string[], options: O, allowPositionals = false) {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    process.stderr.write(`${name}: ${messageOf(err)}\n${usage}\n`);
    process.exit(2);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return parsed;
}
