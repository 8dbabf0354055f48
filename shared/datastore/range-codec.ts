/**
 * etcd's Range request and response in protobuf's wire format, for the one read that moves most
 * bytes: a scan of a large prefix (100,000 endpoints are 70 MB). The generic decoder builds an
 * object per key with buffers and every revision as a string, then a copy of it; reading only the
 * fields we keep, straight into strings, takes a fraction of the time and the garbage.
 * Field numbers from etcd's rpc.proto and kv.proto (mvccpb.KeyValue).
 */
import { DatastoreRequestError } from './errors';
import type { Entry, Revision } from './kv';

export interface RangeRequest {
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
  readonly limit: number;
  /** Read at this revision; absent: the newest. */
  readonly revision?: Revision;
  readonly keysOnly: boolean;
}

export interface RangeResponse {
  /** The store's revision the read was served at. */
  readonly revision: Revision;
  readonly entries: Entry[];
  readonly more: boolean;
  /** Keys in the whole range, this page's included. */
  readonly count: number;
}

const WIRE = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

export function encodeRangeRequest(request: RangeRequest): Buffer {
  const out = new Writer();
  out.bytes(1, request.key);
  out.bytes(2, request.rangeEnd);
  if (request.limit > 0) out.varint(3, BigInt(request.limit));
  if (request.revision !== undefined) out.varint(4, BigInt(request.revision));
  if (request.keysOnly) out.varint(8, 1n);
  return out.finish();
}

export function decodeRangeResponse(buf: Buffer): RangeResponse {
  const reader = new Reader(buf, 0, buf.length);
  let revision = '0';
  let more = false;
  let count = 0;
  const entries: Entry[] = [];
  while (reader.more()) {
    const { field, wire } = reader.tag();
    if (field === 1 && wire === WIRE.bytes) revision = headerRevision(reader.message());
    else if (field === 2 && wire === WIRE.bytes) entries.push(keyValue(reader.message()));
    else if (field === 3 && wire === WIRE.varint) more = reader.varint() !== '0';
    else if (field === 4 && wire === WIRE.varint) count = Number(reader.varint());
    else reader.skip(wire);
  }
  return { revision, entries, more, count };
}

/** etcdserverpb.ResponseHeader: revision is field 3. */
function headerRevision(reader: Reader): string {
  let revision = '0';
  while (reader.more()) {
    const { field, wire } = reader.tag();
    if (field === 3 && wire === WIRE.varint) revision = reader.varint();
    else reader.skip(wire);
  }
  return revision;
}

/** mvccpb.KeyValue: key 1, mod_revision 3, value 5 (the revisions and lease we do not keep are skipped). */
function keyValue(reader: Reader): Entry {
  let key = '';
  let value = '';
  let modRevision = '0';
  while (reader.more()) {
    const { field, wire } = reader.tag();
    if (field === 1 && wire === WIRE.bytes) key = reader.string();
    else if (field === 3 && wire === WIRE.varint) modRevision = reader.varint();
    else if (field === 5 && wire === WIRE.bytes) value = reader.string();
    else reader.skip(wire);
  }
  return { key, value, modRevision };
}

class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
    private readonly end: number,
  ) {}

  more(): boolean {
    return this.pos < this.end;
  }

  tag(): { field: number; wire: number } {
    const tag = this.small();
    return { field: tag >>> 3, wire: tag & 7 };
  }

  /** A varint as a decimal string (int64 fields: revisions, counts). */
  varint(): string {
    let value = 0;
    let scale = 1;
    const start = this.pos;
    for (;;) {
      const byte = this.byte();
      // Seven bytes carry 49 bits: exact in a double. Longer ones are read again exactly.
      if (this.pos - start > 7) return this.bigVarint(start);
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return String(value);
      scale *= 128;
    }
  }

  string(): string {
    const length = this.small();
    const start = this.pos;
    this.advance(length);
    return this.buf.toString('utf8', start, this.pos);
  }

  message(): Reader {
    const length = this.small();
    const start = this.pos;
    this.advance(length);
    return new Reader(this.buf, start, this.pos);
  }

  skip(wire: number): void {
    if (wire === WIRE.varint) this.varint();
    else if (wire === WIRE.fixed64) this.advance(8);
    else if (wire === WIRE.bytes) this.advance(this.small());
    else if (wire === WIRE.fixed32) this.advance(4);
    else throw malformed(`wire type ${wire}`);
  }

  /** A varint known to be small (tags, lengths): at most 32 bits. */
  private small(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.byte();
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw malformed('a length or tag longer than 32 bits');
  }

  private bigVarint(start: number): string {
    this.pos = start;
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const byte = this.byte();
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return String(BigInt.asIntN(64, value));
    }
    throw malformed('a varint longer than 64 bits');
  }

  private byte(): number {
    if (this.pos >= this.end) throw malformed('a field cut short');
    return this.buf[this.pos++]!;
  }

  private advance(length: number): void {
    if (this.pos + length > this.end) throw malformed('a field cut short');
    this.pos += length;
  }
}

class Writer {
  private readonly parts: Buffer[] = [];

  bytes(field: number, value: Buffer): void {
    this.parts.push(varintBytes(BigInt((field << 3) | WIRE.bytes)), varintBytes(BigInt(value.length)), value);
  }

  varint(field: number, value: bigint): void {
    this.parts.push(varintBytes(BigInt((field << 3) | WIRE.varint)), varintBytes(BigInt.asUintN(64, value)));
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function varintBytes(value: bigint): Buffer {
  const bytes: number[] = [];
  do {
    const low = Number(value & 0x7fn);
    value >>= 7n;
    bytes.push(value > 0n ? low | 0x80 : low);
  } while (value > 0n);
  return Buffer.from(bytes);
}

function malformed(what: string): DatastoreRequestError {
  return new DatastoreRequestError(`etcd's answer to a range read is malformed: ${what}`);
}
