/**
 * Group commit, the queue: requests that arrive while a batch is being written wait, and the next
 * batch serves all of them that share a key (the same node and pools, the same kind of work) at
 * once. One batch runs at a time, so a host's claims never race each other and its own writes
 * never conflict with one another.
 */
export type Served<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown };

interface Waiting<J, R> {
  readonly key: string;
  readonly job: J;
  readonly resolve: (value: R) => void;
  readonly reject: (error: unknown) => void;
}

export class GroupCommit<J, R> {
  private readonly waiting: Waiting<J, R>[] = [];
  private draining = false;

  constructor(
    /** Serves one batch (jobs of one key), answering each job in order. */
    private readonly serve: (key: string, jobs: J[]) => Promise<Served<R>[]>,
    private readonly maxBatch: number,
  ) {}

  submit(key: string, job: J): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ key, job, resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.waiting.length > 0) {
        const key = this.waiting[0]!.key;
        const batch: Waiting<J, R>[] = [];
        for (let i = 0; i < this.waiting.length && batch.length < this.maxBatch; ) {
          if (this.waiting[i]!.key === key) batch.push(...this.waiting.splice(i, 1));
          else i++;
        }
        let answers: Served<R>[];
        try {
          answers = await this.serve(key, batch.map((w) => w.job));
        } catch (error) {
          answers = batch.map(() => ({ ok: false, error }));
        }
        batch.forEach((w, i) => {
          const answer = answers[i];
          if (answer?.ok) w.resolve(answer.value);
          else w.reject(answer ? answer.error : new Error('group commit: no answer for a job'));
        });
      }
    } finally {
      this.draining = false;
    }
  }
}
