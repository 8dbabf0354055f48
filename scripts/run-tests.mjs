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
    child.on('close', (code) => {
      if (rest) onLine(rest);
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
if (code !== 0 && failed === 0) failed = 1; // ava itself failed (a file crashed, a timeout)
// Skipped tests (a kernel without a feature) are told on a line of their own: the last is CI's.
if (skipped) echo(`${skipped} skipped (see "# SKIP" above for why)`);
echo(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
