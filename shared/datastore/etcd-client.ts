/**
 * The etcd3 library's client, with one call of our own: a Range whose answer comes back as the
 * bytes etcd sent, for range-codec.ts to decode (see there why). It goes through the library's own
 * connection pool: the same channel, credentials, token and per-member circuit breakers.
 */
import type { Etcd3, IOptions } from 'etcd3';

export interface EtcdClient extends Etcd3 {
  /** One Range call on a member; `request` is an encoded RangeRequest, the answer an encoded RangeResponse. */
  rawRange(request: Buffer, deadline: number): Promise<Buffer>;
}

const RANGE_METHOD = '/etcdserverpb.KV/Range';
const asBytes = (bytes: Buffer) => bytes;

export async function createEtcdClient(options: IOptions): Promise<EtcdClient> {
  // Loaded when first needed: a plugin that answers without etcd never pays for gRPC's start-up.
  const { Etcd3, castGrpcError } = await import('etcd3');
  class ClientWithRawRange extends Etcd3 implements EtcdClient {
    rawRange(request: Buffer, deadline: number): Promise<Buffer> {
      return this.pool.withConnection('KV', ({ client, metadata }) =>
        new Promise<Buffer>((resolve, reject) => {
          client.makeUnaryRequest(RANGE_METHOD, asBytes, asBytes, request, metadata, { deadline }, (err, answer) =>
            // The library's own error classes, as its calls give: its pool and our retries key on them.
            err || !answer ? reject(castGrpcError(err ?? new Error('an empty answer'))) : resolve(answer),
          );
        }),
      );
    }
  }
  return new ClientWithRawRange(options);
}
