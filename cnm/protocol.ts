/**
 * Docker's remote NetworkDriver and IpamDriver wire types (libnetwork's remote driver API), named
 * after the calls, fields exactly as on the wire. Strings are parsed into addresses once, in the
 * handlers, at the boundary.
 */

export const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';

export const LOCAL_ADDRESS_SPACE = 'CalicoLocalAddressSpace';
export const GLOBAL_ADDRESS_SPACE = 'CalicoGlobalAddressSpace';
export const POOL_ID_V4 = 'CalicoPoolIPv4';
export const POOL_ID_V6 = 'CalicoPoolIPv6';
/** The "gateway" we hand Docker with a pool: it then asks no gateway address of us. */
export const NO_GATEWAY_V4 = '0.0.0.0/0';
export const NO_GATEWAY_V6 = '::/0';
export const GATEWAY_OPTION = 'com.docker.network.gateway';
export const REQUEST_ADDRESS_TYPE = 'RequestAddressType';

export interface RequestPoolRequest {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  Options?: Record<string, string> | null;
  V6?: boolean;
}
export interface RequestPoolResponse {
  PoolID: string;
  Pool: string;
  Data: Record<string, string>;
}

export interface ReleasePoolRequest {
  PoolID?: string;
}

export interface RequestAddressRequest {
  PoolID?: string;
  Address?: string;
  Options?: Record<string, string> | null;
}
export interface RequestAddressResponse {
  Address: string;
  Data?: Record<string, string>;
}

export interface ReleaseAddressRequest {
  PoolID?: string;
  Address?: string;
}

export interface IpamData {
  AddressSpace?: string;
  Pool?: string;
  Gateway?: string;
  AuxAddresses?: Record<string, string> | null;
}

export interface CreateNetworkRequest {
  NetworkID?: string;
  Options?: Record<string, unknown> | null;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}

export interface NetworkRequest {
  NetworkID?: string;
}

export interface EndpointInterface {
  Address?: string;
  AddressIPv6?: string;
  MacAddress?: string;
}

export interface CreateEndpointRequest {
  NetworkID?: string;
  EndpointID?: string;
  Interface?: EndpointInterface | null;
  Options?: Record<string, unknown> | null;
}
export interface CreateEndpointResponse {
  Interface: EndpointInterface;
}

export interface EndpointRequest {
  NetworkID?: string;
  EndpointID?: string;
}

export interface JoinRequest {
  NetworkID?: string;
  EndpointID?: string;
  SandboxKey?: string;
  Options?: Record<string, unknown> | null;
}

export interface StaticRoute {
  Destination: string;
  RouteType: number;
  NextHop: string;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes?: StaticRoute[];
  DisableGatewayService?: boolean;
}

/** libnetwork's route type for a directly connected destination. */
export const ROUTE_CONNECTED = 1;
