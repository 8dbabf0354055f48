/**
 * Results are built in the newest form and converted once, when printed, to the version the
 * config asked for (Mesos reads only the 0.2.0 `ip4`/`ip6` fields). Delegates' results of any
 * version are read back into the newest form.
 */
import { CniCode, CniError } from './errors';
import { atLeast, type CniVersion } from './version';

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly sandbox?: string;
  readonly mtu?: number;
}

export interface CniIp {
  /** CIDR notation: "10.0.0.5/32". */
  readonly address: string;
  readonly gateway?: string;
  readonly interface?: number;
}

export interface CniRoute {
  readonly dst: string;
  readonly gw?: string;
}

export interface CniResult {
  readonly interfaces?: readonly CniInterface[];
  readonly ips: readonly CniIp[];
  readonly routes?: readonly CniRoute[];
  readonly dns?: Record<string, unknown>;
}

const isV6 = (cidr: string) => cidr.includes(':');

export function formatResult(result: CniResult, version: CniVersion): Record<string, unknown> {
  const dns = result.dns ?? {};
  if (!atLeast(version, '0.3.0')) {
    const family = (v6: boolean) => {
      const ip = result.ips.find((i) => isV6(i.address) === v6);
      if (!ip) return undefined;
      const routes = (result.routes ?? []).filter((r) => isV6(r.dst) === v6);
      return { ip: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), ...(routes.length ? { routes } : {}) };
    };
    const ip4 = family(false);
    const ip6 = family(true);
    if (!ip4 && !ip6) throw new CniError(CniCode.IncompatibleVersion, `cannot convert a result with no IP address to CNI ${version}`);
    return { cniVersion: version, ...(ip4 ? { ip4 } : {}), ...(ip6 ? { ip6 } : {}), dns };
  }
  const withVersion = !atLeast(version, '1.0.0');
  const withMtu = atLeast(version, '1.1.0');
  return {
    cniVersion: version,
    interfaces: (result.interfaces ?? []).map(({ mtu, ...rest }) => (withMtu && mtu ? { ...rest, mtu } : rest)),
    ips: result.ips.map((ip) => (withVersion ? { version: isV6(ip.address) ? '6' : '4', ...ip } : ip)),
    routes: result.routes ?? [],
    dns,
  };
}

/** Reads a result of any version (an IPAM delegate's, a prevResult) into the newest form. */
export function parseResult(value: unknown, what: string): CniResult {
  if (typeof value !== 'object' || value === null) throw new CniError(CniCode.DecodeFailure, `${what} is not a CNI result object`);
  const r = value as Record<string, unknown>;
  if (Array.isArray(r.ips) || Array.isArray(r.interfaces)) {
    const ips = (Array.isArray(r.ips) ? r.ips : []).map((ip, i) => {
      if (typeof ip?.address !== 'string') throw new CniError(CniCode.DecodeFailure, `${what}: ips[${i}].address is missing`);
      return {
        address: ip.address as string,
        ...(typeof ip.gateway === 'string' ? { gateway: ip.gateway } : {}),
        ...(Number.isInteger(ip.interface) ? { interface: ip.interface as number } : {}),
      };
    });
    return {
      interfaces: (Array.isArray(r.interfaces) ? r.interfaces : []) as CniInterface[],
      ips,
      routes: (Array.isArray(r.routes) ? r.routes : []) as CniRoute[],
      dns: (r.dns ?? {}) as Record<string, unknown>,
    };
  }
  const ips: CniIp[] = [];
  const routes: CniRoute[] = [];
  for (const key of ['ip4', 'ip6']) {
    const family = r[key] as { ip?: unknown; gateway?: unknown; routes?: unknown } | undefined;
    if (!family) continue;
    if (typeof family.ip !== 'string') throw new CniError(CniCode.DecodeFailure, `${what}: ${key}.ip is missing`);
    ips.push({ address: family.ip, ...(typeof family.gateway === 'string' ? { gateway: family.gateway } : {}) });
    if (Array.isArray(family.routes)) routes.push(...(family.routes as CniRoute[]));
  }
  return { ips, routes, dns: (r.dns ?? {}) as Record<string, unknown> };
}
