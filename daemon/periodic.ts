/**
 * A job of the daemon that runs every so often: each pass starts `intervalMs` after the previous
 * one ended (passes never overlap), a failed pass is logged and the next one tries again, and
 * stop() waits for a pass in flight.
 */
import { messageOf } from '../shared/errors';
import type { Logger } from '../shared/log';

export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly pass: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly log: Logger,
    /** Said when a pass fails, before the error. */
    private readonly failure: string,
  ) {}

  /** Starts the first pass one interval from now; an interval of 0 or less never runs. */
  start(): void {
    if (this.intervalMs <= 0) return;
    const tick = () => {
      this.running = this.pass().catch((err: unknown) => this.log.warning(this.failure, { error: messageOf(err) }));
      void this.running.then(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
      });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
