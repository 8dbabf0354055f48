/**
 * The etcd3 library's client, with one call of our own: a Range whose answer comes back as the
 * bytes etcd sent, for range-codec.ts to decode (see there why). It goes through the library's own
 * connection pool: the same channel, credentials, token and per-member circuit breakers.
 */
import type { Etcd3, IOptions } from 'etcd3';

/** The order in which one call's attempts take the members: each once before any twice. */
export type MemberOrder = Generator<unknown, void>;

export interface EtcdClient extends Etcd3 {
  /** A fresh order of the members, for the attempts of one call (see rawRange). */
  memberOrder(): MemberOrder;
  /**
   * One Range call on the next member of `order` that is not skipped for a recent failure;
   * `request` is an encoded RangeRequest, the answer an encoded RangeResponse. Each attempt of a
   * call is given the same order, so a retry goes to another member, as the library's own calls do
   * (a fresh order per attempt may pick the same dead member every time).
   */
  rawRange(request: Buffer, deadline: number, order: MemberOrder): Promise<Buffer>;
}

/** The pool's own shuffle, private in its typings; the library's own calls share one per call. */
interface PoolWithShuffle {
  shuffledHosts(): MemberOrder;
}

const RANGE_METHOD = '/etcdserverpb.KV/Range';
const asBytes = (bytes: Buffer) => bytes;

export async function createEtcdClient(options: IOptions): Promise<EtcdClient> {
  // Loaded when first needed: a plugin that answers without etcd never pays for gRPC's start-up.
  const { Etcd3, castGrpcError } = await import('etcd3');
  class ClientWithRawRange extends Etcd3 implements EtcdClient {
    memberOrder(): MemberOrder {
      return (this.pool as unknown as PoolWithShuffle).shuffledHosts();
    }

    rawRange(request: Buffer, deadline: number, order: MemberOrder): Promise<Buffer> {
      type Hosts = Parameters<typeof this.pool.withConnection>[2];
      return this.pool.withConnection('KV', ({ client, metadata }) =>
        new Promise<Buffer>((resolve, reject) => {
          client.makeUnaryRequest(RANGE_METHOD, asBytes, asBytes, request, metadata, { deadline }, (err, answer) =>
            // The library's own error classes, as its calls give: its pool and our retries key on them.
            err || !answer ? reject(castGrpcError(err ?? new Error('an empty answer'))) : resolve(answer),
          );
        }),
        order as Hosts,
      );
    }
  }
  return new ClientWithRawRange(options);
}
