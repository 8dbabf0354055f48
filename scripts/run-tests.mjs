// Runs the type check, the build and the ava suite, shows ava's TAP as it goes, and ends with the line
// "N passed, N failed" (CI reads it). Exit code non-zero on any failure.
import { spawn } from 'node:child_process';

function run(command, args, onLine) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let rest = '';
    child.stdout.on('data', (chunk) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop();
      for (const line of lines) onLine(line);
    });
    child.on('close', (code, signal) => {
      if (rest) onLine(rest);
      if (code !== 0) process.stderr.write(`${command} ${args[0] ?? ''} ended with ${signal ? `signal ${signal}` : `exit code ${code}`}\n`);
      resolve(code ?? 1);
    });
  });
}

const echo = (line) => process.stdout.write(`${line}\n`);
const typecheck = await run('npx', ['tsc', '--noEmit', '-p', '.'], echo);
if (typecheck !== 0) {
  echo('type check failed');
  echo('0 passed, 1 failed');
  process.exit(1);
}

// The end-to-end tests run the bundled executables, as operators install them.
const build = await run('npm', ['run', '--silent', 'build'], echo);
if (build !== 0) {
  echo('build failed');
  echo('0 passed, 1 failed');
  process.exit(1);
}

let passed = 0;
let failed = 0;
let skipped = 0;
const code = await run('npx', ['ava', '--tap', ...process.argv.slice(2)], (line) => {
  echo(line);
  if (/^ok \d+/.test(line)) (/# SKIP/.test(line) ? skipped++ : passed++);
  else if (/^not ok \d+/.test(line)) failed++;
});
// ava itself failed (a file crashed, a timeout, a worker that exited on its own after its tests,
// which ava counts without a TAP line): the line above says how it ended.
if (code !== 0 && failed === 0) failed = 1;
// Skipped tests (a kernel without a feature) are told on a line of their own: the last is CI's.
if (skipped) echo(`${skipped} skipped (see "# SKIP" above for why)`);
echo(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
