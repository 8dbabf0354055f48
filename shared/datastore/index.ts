/**
 * The datastore: one etcd connection, its key layout, and typed access to resources. The IPAM
 * records are reached through `kv` with the codecs of ipam-records.ts.
 */
import { KeyLayout } from './keys';
import { EtcdKv } from './kv';
import { ResourceStore } from './resources';
import type { EtcdSettings } from './settings';

export class Datastore {
  readonly keys: KeyLayout;
  readonly resources: ResourceStore;

  private constructor(readonly kv: EtcdKv) {
    this.keys = new KeyLayout(kv.settings.prefix);
    this.resources = new ResourceStore(kv, this.keys);
  }

  static async connect(settings: EtcdSettings): Promise<Datastore> {
    return new Datastore(await EtcdKv.connect(settings));
  }

  get endpoints(): readonly string[] {
    return this.kv.settings.endpoints;
  }

  close(): void {
    this.kv.close();
  }
}

export * from './errors';
export * from './settings';
export type { Entry, Expect, GuardedPut, Revision, TxnOp, TxnOutcome, WatchEvent, WatchHandle } from './kv';
export * from './keys';
export * from './resources';
export * from './ipam-records';
