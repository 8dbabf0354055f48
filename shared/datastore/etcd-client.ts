/**
 * The etcd3 library's client, adapted where it falls short of a cluster with a silent member:
 * - every call and stream takes the members in the order MemberHealth gives (the library shuffles
 *   afresh, so a member that answers nothing keeps costing calls their deadline);
 * - a watch stream is opened only on a member that connects within the deadline, and asks etcd to
 *   end it when that member loses its leader (etcd's `hasleader`, as its Go client asks): a stream
 *   has no deadline of its own, and without these a watch on a cut-off member waits forever;
 * - one call of our own: a Range whose answer comes back as the bytes etcd sent, for
 *   range-codec.ts to decode (see there why), through the library's pool: the same channel,
 *   credentials, token and per-member circuit breakers.
 * The first needs two members of the pool its typings call private; their absence is an error at
 * once, so an upgrade of the library that moves them cannot go unnoticed.
 */
import type { Client, Metadata } from '@grpc/grpc-js';
import type { Etcd3, IOptions } from 'etcd3';
import type { Host } from 'etcd3/lib/connection-pool';
import { MemberHealth } from './member-health';

/** The order in which one call's attempts take the members: each once before any twice. */
export type MemberOrder = Generator<Host, void>;

export interface EtcdClient extends Etcd3 {
  /** The members in the order a call's attempts should take them (see rawRange). */
  memberOrder(): MemberOrder;
  /**
   * One Range call on the next member of `order` that is not skipped for a recent failure;
   * `request` is an encoded RangeRequest, the answer an encoded RangeResponse. Each attempt of a
   * call is given the same order, so a retry goes to another member, as the library's own calls do.
   */
  rawRange(request: Buffer, deadline: number, order: MemberOrder): Promise<Buffer>;
}

type ServiceName = Parameters<Etcd3['pool']['withConnection']>[0];
interface Connection {
  resource: Host;
  client: Client;
  metadata: Metadata;
}

/** What of the pool we reach into: its members, and the order its calls take them in. */
interface PoolInternals {
  hosts: Host[];
  shuffledHosts(): MemberOrder;
  withConnection<T>(service: ServiceName, fn: (connection: Connection) => Promise<T> | T, order?: MemberOrder): Promise<T>;
  markFailed(resource: Host, error: Error): void;
}

const RANGE_METHOD = '/etcdserverpb.KV/Range';
const asBytes = (bytes: Buffer) => bytes;

/** `connectTimeoutMs`: how long a stream waits for its member to connect before trying another. */
export async function createEtcdClient(options: IOptions, connectTimeoutMs: number): Promise<EtcdClient> {
  // Loaded when first needed: a plugin that answers without etcd never pays for gRPC's start-up.
  const { Etcd3, castGrpcError, GRPCUnavailableError, GRPCDeadlineExceededError } = await import('etcd3');
  /** A member that did not answer in time or could not be reached; not a refusal or a cancel. */
  const isMemberFailure = (err: unknown) => {
    const typed = err instanceof Error ? castGrpcError(err) : err;
    return typed instanceof GRPCUnavailableError || typed instanceof GRPCDeadlineExceededError;
  };

  class AdaptedClient extends Etcd3 implements EtcdClient {
    private readonly health: MemberHealth<Host>;

    constructor() {
      super(options);
      const pool = this.pool as unknown as PoolInternals;
      if (!Array.isArray(pool.hosts) || typeof pool.shuffledHosts !== 'function') {
        throw new Error('the etcd3 library no longer has the pool members this client adapts (hosts, shuffledHosts)');
      }
      const health = new MemberHealth(pool.hosts);
      this.health = health;
      pool.shuffledHosts = () => health.order();
      const observed = <T>(connection: Connection, fn: (connection: Connection) => Promise<T> | T): Promise<T> | T => {
        const result = fn(connection);
        if (!(result instanceof Promise)) return result;
        return result.then(
          (answer: T) => {
            health.answered(connection.resource);
            return answer;
          },
          (err: unknown) => {
            if (isMemberFailure(err)) health.failed(connection.resource);
            throw err;
          },
        );
      };
      const openWatch = async <T>(connection: Connection, fn: (connection: Connection) => Promise<T> | T): Promise<T> => {
        const connected = await new Promise<boolean>((resolve) => connection.client.waitForReady(Date.now() + connectTimeoutMs, (err) => resolve(!err)));
        if (!connected) {
          health.failed(connection.resource);
          throw new GRPCUnavailableError(`no connection to an etcd member within ${connectTimeoutMs} ms`);
        }
        const metadata = connection.metadata.clone();
        metadata.set('hasleader', 'true');
        return fn({ ...connection, metadata });
      };
      const withConnection = pool.withConnection.bind(pool);
      pool.withConnection = (service, fn, order) =>
        withConnection(service, (connection) => (service === 'Watch' ? openWatch(connection, fn) : observed(connection, fn)), order);
      const markFailed = pool.markFailed.bind(pool);
      // Where the library hears of a stream's failure.
      pool.markFailed = (resource, error) => {
        if (isMemberFailure(error)) health.failed(resource);
        markFailed(resource, error);
      };
    }

    memberOrder(): MemberOrder {
      return this.health.order();
    }

    rawRange(request: Buffer, deadline: number, order: MemberOrder): Promise<Buffer> {
      return (this.pool as unknown as PoolInternals).withConnection('KV', ({ client, metadata }) =>
        new Promise<Buffer>((resolve, reject) => {
          client.makeUnaryRequest(RANGE_METHOD, asBytes, asBytes, request, metadata, { deadline }, (err, answer) =>
            // The library's own error classes, as its calls give: its pool and our retries key on them.
            err || !answer ? reject(castGrpcError(err ?? new Error('an empty answer'))) : resolve(answer),
          );
        }),
        order,
      );
    }
  }
  return new AdaptedClient();
}
