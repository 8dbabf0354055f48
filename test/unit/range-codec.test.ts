import { createRequire } from 'node:module';
import test from 'ava';
import { loadSync } from '@grpc/proto-loader';
import { decodeRangeResponse, encodeRangeRequest } from '../../shared/datastore/range-codec';

// The etcd3 library's own codec for the same messages, from the same .proto files, as reference.
const proto = loadSync(createRequire(import.meta.url).resolve('etcd3/proto/rpc.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const range = (proto['etcdserverpb.KV'] as Record<string, { requestDeserialize(b: Buffer): unknown; responseSerialize(v: unknown): Buffer }>)['Range']!;

test('range codec - answers decode as the library decodes them: multi-byte keys, empty values, revisions past 2^53', (t) => {
  const kvs = [
    { key: Buffer.from('/calico/resources/v3/projectcalico.org/workloadendpoints/ns/é-😀'), value: Buffer.from('{"a":"ü"}'), mod_revision: '7', create_revision: '3', version: '2', lease: '9223372036854775807' },
    { key: Buffer.from('/k'), value: Buffer.alloc(0), mod_revision: '9007199254740993', create_revision: '1', version: '1', lease: '0' },
    { key: Buffer.from('/x'.repeat(5000)), value: Buffer.from('v'.repeat(70_000)), mod_revision: '127', create_revision: '128', version: '1', lease: '0' },
  ];
  const encoded = range.responseSerialize({ header: { cluster_id: '18446744073709551615', member_id: '1', revision: '123456789012', raft_term: '4' }, kvs, more: true, count: '100000' });
  t.deepEqual(decodeRangeResponse(encoded), {
    revision: '123456789012',
    more: true,
    count: 100_000,
    entries: kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), modRevision: kv.mod_revision })),
  });
  t.deepEqual(decodeRangeResponse(range.responseSerialize({ header: { revision: '5' }, kvs: [] })), { revision: '5', more: false, count: 0, entries: [] });
});

test('range codec - fields it does not know are skipped; a cut-short answer is an error, never a crash', (t) => {
  const known = range.responseSerialize({ header: { revision: '5' }, kvs: [{ key: Buffer.from('/a'), value: Buffer.from('1'), mod_revision: '5' }], count: '1' });
  // Field 15 as a varint, a fixed64, a fixed32 and bytes: what a newer etcd might add.
  const unknown = Buffer.from([0x78, 0x96, 0x01, 0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x7d, 1, 2, 3, 4, 0x7a, 2, 0xff, 0xff]);
  t.deepEqual(decodeRangeResponse(Buffer.concat([unknown, known])).entries, [{ key: '/a', value: '1', modRevision: '5' }]);
  for (let cut = 1; cut < known.length; cut++) {
    try {
      decodeRangeResponse(known.subarray(0, cut));
    } catch (err) {
      t.is((err as { code?: string }).code, 'DATASTORE_REQUEST_FAILED');
    }
  }
  t.throws(() => decodeRangeResponse(Buffer.from([0x0b])), { message: /malformed: wire type 3/ });
});

test('range codec - requests read back as the library reads them', (t) => {
  const request = { key: Buffer.from('/calico/a'), rangeEnd: Buffer.from('/calico/b'), limit: 6004, revision: '9007199254740993', keysOnly: true };
  t.like(range.requestDeserialize(encodeRangeRequest(request)), { key: request.key, range_end: request.rangeEnd, limit: '6004', revision: '9007199254740993', keys_only: true, serializable: false });
  t.like(range.requestDeserialize(encodeRangeRequest({ key: Buffer.from('/'), rangeEnd: Buffer.from([0]), limit: 0, keysOnly: false })), { limit: '0', revision: '0', keys_only: false });
});
