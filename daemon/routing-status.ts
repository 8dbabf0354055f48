/**
 * This host's routing status, published for `calicoctl node status` (which may run anywhere) as
 * Calico's CalicoNodeStatus `<node>`: the backend, whether BIRD answers, and each BGP peer's
 * session as BIRD reports it. Looked at every 10 s; written only when it changed, or every 5
 * minutes so that a stale record shows its age (`lastUpdated`).
 */
import type { Datastore } from '../shared/datastore';
import type { JsonObject } from '../shared/datastore/codec';
import { messageOf } from '../shared/errors';
import type { Logger } from '../shared/log';
import type { RoutingBackend } from '../shared/routing/desired-routes';
import type { RoutingStatus } from '../shared/routing/status';
import type { BirdKeeper } from './bird-keeper';

const LOOK_MS = 10_000;
const REFRESH_MS = 5 * 60_000;

export class RoutingStatusReporter {
  private timer: NodeJS.Timeout | undefined;
  private written: { json: string; at: number } | undefined;

  constructor(
    private readonly datastore: () => Promise<Datastore>,
    private readonly node: string,
    private readonly backend: RoutingBackend,
    private readonly bird: BirdKeeper | undefined,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = () => {
      this.timer = setTimeout(() => void this.report().finally(tick), LOOK_MS);
      this.timer.unref();
    };
    void this.report().finally(tick);
  }

  async report(): Promise<void> {
    try {
      const peers = this.bird ? await this.bird.peers() : [];
      const status: RoutingStatus = { backend: this.backend, ...(this.bird ? { birdRunning: peers !== undefined } : {}), peers: peers ?? [] };
      const json = JSON.stringify(status);
      if (this.written?.json === json && Date.now() - this.written.at < REFRESH_MS) return;
      const ds = await this.datastore();
      const record = { lastUpdated: new Date().toISOString(), ...status } as unknown as JsonObject;
      const existing = await ds.resources.get('CalicoNodeStatus', this.node);
      const spec = { node: this.node, classes: ['Agent', 'BGP'], updatePeriodSeconds: LOOK_MS / 1000 };
      if (existing) await ds.resources.update({ ...existing, spec, status: record });
      else await ds.resources.create({ kind: 'CalicoNodeStatus', apiVersion: 'projectcalico.org/v3', metadata: { name: this.node }, spec, status: record });
      this.written = { json, at: Date.now() };
    } catch (err) {
      this.log.debug('routing status not published; will retry', { error: messageOf(err) });
    }
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
