import type { TestFn } from 'ava';
import { EtcdServer } from '../../sim/etcd';

/** Registers hooks that start one etcd before the file's tests and remove it (and `closeables`) after. */
export function useEtcd(test: TestFn, closeables: { close(): void }[] = []): { readonly etcd: EtcdServer } {
  const state = {} as { etcd: EtcdServer };
  // Serial: it runs before the file's own before hooks, which may use the etcd.
  test.serial.before(async () => {
    state.etcd = await EtcdServer.start();
  });
  test.after.always(async () => {
    for (const c of closeables) c.close();
    await state.etcd?.destroy();
  });
  return state;
}
