/**
 * Which etcd members failed lately, and so the order in which a call tries them: those with no
 * recent failure first, shuffled to spread the load, then those that failed, the longest ago
 * first. A member that answers nothing (a silent partition) costs a call its whole deadline; kept
 * aside once it has, it costs that once per process and not to every call that happens to pick it,
 * as etcd's own Go client keeps unhealthy endpoints aside.
 */

/** How long a failed member is tried after the others; then it is taken as any other again. */
export const FAILURE_MEMORY_MS = 30_000;

export class MemberHealth<Member> {
  private readonly failedAt = new Map<Member, number>();

  constructor(
    private readonly members: readonly Member[],
    private readonly memoryMs = FAILURE_MEMORY_MS,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  failed(member: Member): void {
    this.failedAt.set(member, this.now());
  }

  /** An answered call: the member is taken as any other from now on. */
  answered(member: Member): void {
    this.failedAt.delete(member);
  }

  /**
   * The members without end, each once per round, every round ordered as it starts: the attempts
   * of one call take them in turn, so a retry goes to another member.
   */
  *order(): Generator<Member, void> {
    for (;;) yield* this.round();
  }

  round(): Member[] {
    const now = this.now();
    const healthy: Member[] = [];
    const failed: { member: Member; at: number }[] = [];
    for (const member of this.members) {
      const at = this.failedAt.get(member);
      if (at === undefined || now - at >= this.memoryMs) healthy.push(member);
      else failed.push({ member, at });
    }
    for (let i = healthy.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [healthy[i], healthy[j]] = [healthy[j]!, healthy[i]!];
    }
    failed.sort((a, b) => a.at - b.at);
    return [...healthy, ...failed.map((f) => f.member)];
  }
}
