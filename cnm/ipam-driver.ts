/**
 * Docker's IpamDriver over our IPAM. Docker's RequestAddress carries no endpoint, so each address
 * gets a handle of its own (identity.ts's `libnetwork:<uuid>`); CreateEndpoint then records in the
 * address's attributes which endpoint and network it went to (see network-driver.ts), so every
 * address has an owner that leak checks can follow. ReleaseAddress frees only addresses this
 * driver handed out on this host: a CNI task's address is never Docker's to free.
 */
import { newDockerHandle } from '../shared/endpoints/identity';
import { dockerOwned } from '../shared/endpoints/teardown';
import { hostPrefix, parseAddress, parseCidr, formatCidr, formatAddress, type IpAddress, type IpVersion } from '../shared/net';
import { AddressInUseError } from '../shared/ipam/errors';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { DriverRequestError, field, flagField, mapField } from './errors';
import type { Handler } from './server';
import {
  GATEWAY_OPTION,
  GLOBAL_ADDRESS_SPACE,
  LOCAL_ADDRESS_SPACE,
  NO_GATEWAY_V4,
  NO_GATEWAY_V6,
  POOL_ID_V4,
  POOL_ID_V6,
  REQUEST_ADDRESS_TYPE,
  type RequestAddressResponse,
  type RequestPoolResponse,
} from './protocol';

const ORCHESTRATOR = 'libnetwork';

export class IpamDriver {
  constructor(
    private readonly ipam: () => Promise<Ipam>,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  /** The calls of Docker's IpamDriver API, by name, as the driver server routes them. */
  handlers(): Readonly<Record<string, Handler>> {
    return {
      'IpamDriver.GetCapabilities': () => this.capabilities(),
      'IpamDriver.GetDefaultAddressSpaces': () => this.defaultAddressSpaces(),
      'IpamDriver.RequestPool': (b) => this.requestPool(b),
      'IpamDriver.ReleasePool': (b) => this.releasePool(b),
      'IpamDriver.RequestAddress': (b) => this.requestAddress(b),
      'IpamDriver.ReleaseAddress': (b) => this.releaseAddress(b),
    };
  }

  capabilities() {
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  defaultAddressSpaces() {
    return { LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE };
  }

  async requestPool(body: Record<string, unknown>): Promise<RequestPoolResponse> {
    const v6 = flagField(body, 'V6');
    field(body, 'AddressSpace');
    if (field(body, 'SubPool')) throw new DriverRequestError('Calico IPAM does not support --ip-range: the whole Calico pool is used; drop --ip-range');
    const options = mapField(body, 'Options');
    if (Object.keys(options).length > 0) {
      throw new DriverRequestError(`Calico IPAM does not support --ipam-opt (${Object.keys(options).join(', ')}); drop it`);
    }
    const requested = field(body, 'Pool');
    const noGateway = v6 ? NO_GATEWAY_V6 : NO_GATEWAY_V4;
    if (!requested) {
      return { PoolID: v6 ? POOL_ID_V6 : POOL_ID_V4, Pool: noGateway, Data: { [GATEWAY_OPTION]: noGateway } };
    }
    let cidr;
    try {
      cidr = parseCidr(requested, '--subnet');
    } catch (err) {
      throw new DriverRequestError(`${(err as Error).message}`);
    }
    const pool = (await (await this.ipam()).pools()).find((p) => formatCidr(p.cidr) === formatCidr(cidr));
    if (!pool) {
      throw new DriverRequestError(`--subnet ${requested} is not a Calico IP pool: create the pool first, or leave out --subnet to use every Calico pool`);
    }
    if (pool.disabled) throw new DriverRequestError(`--subnet ${requested} is a disabled Calico IP pool; enable it or choose another`);
    return { PoolID: formatCidr(pool.cidr), Pool: formatCidr(pool.cidr), Data: { [GATEWAY_OPTION]: noGateway } };
  }

  /** Nothing to give back (pools are Calico's), but the request is checked like any other. */
  releasePool(body: Record<string, unknown>): Record<string, never> {
    field(body, 'PoolID');
    return {};
  }

  async requestAddress(body: Record<string, unknown>): Promise<RequestAddressResponse> {
    const options = mapField(body, 'Options');
    if (options[REQUEST_ADDRESS_TYPE] === GATEWAY_OPTION) {
      throw new DriverRequestError('Calico networks have no gateway address (containers route via 169.254.1.1): leave out --gateway');
    }
    const { version, pools } = this.poolOf(field(body, 'PoolID', true));
    const ipam = await this.ipam();
    const requested = field(body, 'Address');
    if (requested) {
      const address = parseRequested(requested, version);
      try {
        await ipam.assign({ address, handle: newDockerHandle(), node: this.node, pools, attributes: { orchestrator: ORCHESTRATOR } });
      } catch (err) {
        if (err instanceof AddressInUseError) throw new DriverRequestError(`${requested} is already in use: choose another --ip, or leave --ip out`);
        throw err;
      }
      this.log.info('assigned the requested address', { address: formatAddress(address) });
      return { Address: hostPrefix(address) };
    }
    const { ipv4, ipv6 } = await ipam.autoAssign({
      handle: newDockerHandle(),
      node: this.node,
      num4: version === 4 ? 1 : 0,
      num6: version === 6 ? 1 : 0,
      ...(version === 4 ? { pools4: pools } : { pools6: pools }),
      attributes: { orchestrator: ORCHESTRATOR },
    });
    const address = [...ipv4, ...ipv6][0]!;
    this.log.info('assigned an address', { address: formatAddress(address) });
    return { Address: hostPrefix(address) };
  }

  async releaseAddress(body: Record<string, unknown>): Promise<Record<string, never>> {
    field(body, 'PoolID');
    const text = field(body, 'Address');
    if (!text) return {};
    const address = parseRequested(text, text.includes(':') ? 6 : 4);
    // Docker releases the dummy gateway too, which was never allocated: that is a no-op.
    const { released, notOwned } = await (await this.ipam()).release([address], dockerOwned(this.node));
    if (released.length > 0) this.log.info('released an address', { address: formatAddress(address) });
    if (notOwned.length > 0) this.log.warning('not releasing an address Docker did not get from this host\'s driver', { address: formatAddress(address) });
    return {};
  }

  private poolOf(poolId: string): { version: IpVersion; pools: string[] | undefined } {
    if (poolId === POOL_ID_V4) return { version: 4, pools: undefined };
    if (poolId === POOL_ID_V6) return { version: 6, pools: undefined };
    try {
      const cidr = parseCidr(poolId, 'PoolID');
      return { version: cidr.version, pools: [formatCidr(cidr)] };
    } catch {
      throw new DriverRequestError(`PoolID "${poolId}" is not one this driver handed out`);
    }
  }
}

/** An address as Docker sends it ("10.0.0.5" or "10.0.0.5/32"), of the pool's IP version. */
function parseRequested(text: string, version: IpVersion): IpAddress {
  let address: IpAddress;
  try {
    address = parseAddress(text.split('/')[0]!, 'Address');
  } catch (err) {
    throw new DriverRequestError((err as Error).message);
  }
  if (address.version !== version) throw new DriverRequestError(`${text} is not an IPv${version} address`);
  return address;
}
