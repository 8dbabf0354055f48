import test from 'ava';
import { decodeForwarded } from '../../daemon/forward-framing';

test('forward framing - a JSON request is answered in JSON', (t) => {
  const decoded = decodeForwarded(JSON.stringify({ kind: 'calico', env: { CNI_COMMAND: 'ADD' }, stdin: '{}' }));
  t.deepEqual(decoded.request, { kind: 'calico', env: { CNI_COMMAND: 'ADD' }, stdin: '{}' });
  t.is(decoded.encode({ stdout: '{"a":1}', exitCode: 0 }), '{"stdout":"{\\"a\\":1}","exitCode":0}\n');
});

test('forward framing - the script\'s request: kind, the environment as env -0 lists it, stdin to the end (NULs, "=" and newlines in values kept)', (t) => {
  const stdin = '{"command": "release",\n "args": {}}\n\n';
  const decoded = decodeForwarded(`calico_mesos\0PATH=/bin\0A=b=c\0MULTI=one\ntwo\0EMPTY=\0\0${stdin}`);
  t.deepEqual(decoded.request, { kind: 'calico_mesos', env: { PATH: '/bin', A: 'b=c', MULTI: 'one\ntwo', EMPTY: '' }, stdin });
  t.is(decoded.encode({ stdout: '{"error": null}', exitCode: 0 }), '0{"error": null}');
  t.is(decoded.encode({ stdout: '{"error": "x"}', exitCode: 1 }), '1{"error": "x"}');
  t.is(decoded.encode({ stdout: '', exitCode: 300 }), '1', 'an exit code the digit cannot hold is a failure');
  t.deepEqual(decodeForwarded('calico_mesos\0\0').request, { kind: 'calico_mesos', env: {}, stdin: '' }, 'an empty environment and stdin');
});

test('forward framing - what is not a request we serve is refused: JSON in JSON, the script with nothing (node then answers)', (t) => {
  for (const text of ['', 'calico_mesos', 'calico_mesos\0A=b', 'calico_mesos\0noequals\0\0{}', 'calico_mesos\0=x\0\0{}', 'other\0\0{}']) {
    const decoded = decodeForwarded(text);
    t.is(decoded.request, undefined, JSON.stringify(text));
    t.is(decoded.refusal, '');
  }
  for (const text of ['{', '{"kind": "other", "env": {}, "stdin": ""}', '{"kind": "calico", "env": [], "stdin": ""}', '{"kind": "calico", "env": {}, "stdin": 7}']) {
    const decoded = decodeForwarded(text);
    t.is(decoded.request, undefined, text);
    t.deepEqual(JSON.parse(decoded.refusal), { stdout: '', exitCode: 1 });
  }
});
