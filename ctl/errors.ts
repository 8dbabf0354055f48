import { CalicoError } from '../shared/errors';

/** Something the operator asked that cannot be done as asked; the message says why and what to do. */
export class CtlError extends CalicoError {
  readonly code = 'CTL_USAGE';
}

/** A command line that does not parse (an unknown flag, a missing value): the usage follows, exit code 2. */
export class CtlUsageError extends CalicoError {
  readonly code = 'CTL_BAD_COMMAND_LINE';
}
