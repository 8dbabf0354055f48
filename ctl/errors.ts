import { CalicoError } from '../shared/errors';

/** Something the operator asked that cannot be done as asked; the message says why and what to do. */
export class CtlError extends CalicoError {
  readonly code = 'CTL_USAGE';
}
