/**
 * IPAM for the main plugin: the plugin named by `ipam.type`, found in CNI_PATH and run with the
 * same environment and stdin, as the spec says. Our own `calico-ipam` runs in this process
 * instead: the same code, without a second node start-up (~70 ms) on every ADD.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { handleOf } from '../shared/endpoints/identity';
import type { Companion } from '../shared/ipam/batch';
import type { CompanionOutcome, ReleaseCompanion } from '../shared/ipam/ipam';
import { ownedBy } from '../shared/ipam/block';
import { attachmentOf } from './attachment';
import { ipamOf, type CniContext } from './context';
import { CniCode, CniError } from './errors';
import { allocate, ipamCheck, ipamResult, release } from './ipam-plugin';
import { parseResult, type CniResult } from './result';

export const OWN_IPAM = 'calico-ipam';
const DELEGATE_TIMEOUT_MS = 60_000;

/**
 * IPAM ADD, and how to give back what it took if the ADD fails later. Our own IPAM writes
 * `companion` (the endpoint record) in the allocation's transaction when it can: `recorded` says
 * whether it did; another IPAM plugin never does.
 */
export async function delegateAdd(ctx: CniContext, companion?: Companion): Promise<{ result: CniResult; undo: () => Promise<void>; recorded: boolean }> {
  if (ctx.conf.ipam.type === OWN_IPAM) {
    const { addresses, companionWritten } = await allocate(ctx, { reuseHeld: false, ...(companion ? { companion } : {}) });
    // Exactly the new addresses: a DEL would release the whole handle, including what a
    // concurrent ADD of the same container holds.
    const owner = ownedBy(handleOf(attachmentOf(ctx.conf, ctx.env)));
    const undo = async () => {
      await (await ipamOf(ctx)).release(addresses, owner);
    };
    return { result: ipamResult(addresses), undo, recorded: companionWritten };
  }
  const result = parseResult(await execIpam(ctx, 'ADD'), `the result of IPAM plugin "${ctx.conf.ipam.type}"`);
  return { result, undo: () => execIpam(ctx, 'DEL').then(() => undefined), recorded: false };
}

/**
 * IPAM DEL. Our own IPAM deletes `companion` (the endpoint record) in the release's transaction
 * and says what became of it; undefined when nothing was done with it (another IPAM plugin, or a
 * record it could not judge): the caller deletes it apart.
 */
export async function delegateDel(ctx: CniContext, companion?: ReleaseCompanion): Promise<CompanionOutcome | undefined> {
  if (ctx.conf.ipam.type === OWN_IPAM) return release(ctx, companion);
  await execIpam(ctx, 'DEL');
  return undefined;
}

export async function delegateCheck(ctx: CniContext): Promise<void> {
  if (ctx.conf.ipam.type === OWN_IPAM) return ipamCheck(ctx);
  await execIpam(ctx, 'CHECK');
}

function findPlugin(type: string, dirs: readonly string[]): string {
  for (const dir of dirs) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  if (dirs.length === 0) throw new CniError(CniCode.InvalidEnvironment, `invalid CNI_PATH: it is not set, so IPAM plugin "${type}" cannot be found`);
  throw new CniError(CniCode.InvalidConfig, `invalid network config: IPAM plugin "${type}" (ipam.type) was not found in CNI_PATH ${dirs.join(':')}`);
}

async function execIpam(ctx: CniContext, command: 'ADD' | 'DEL' | 'CHECK'): Promise<unknown> {
  const { type } = ctx.conf.ipam;
  const file = findPlugin(type, ctx.env.path);
  ctx.log.debug('running IPAM plugin', { plugin: file, command });
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(file, [], { env: { ...ctx.processEnv, CNI_COMMAND: command }, timeout: DELEGATE_TIMEOUT_MS, maxBuffer: 4 << 20 }, (err, out, errOut) => {
      const exit = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code: exit, stdout: out, stderr: errOut });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(JSON.stringify(ctx.conf.raw));
  });
  let answer: Record<string, unknown> | undefined;
  try {
    answer = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
  } catch {
    answer = undefined;
  }
  if (code !== 0) {
    const msg = typeof answer?.msg === 'string' ? answer.msg : stderr.trim() || `exit code ${code}`;
    const theirCode = typeof answer?.code === 'number' ? answer.code : CniCode.Internal;
    throw new CniError(theirCode, `IPAM plugin "${type}" failed on ${command}: ${msg}`, typeof answer?.details === 'string' ? answer.details : '');
  }
  if (command === 'ADD' && answer === undefined) throw new CniError(CniCode.DecodeFailure, `IPAM plugin "${type}" printed no result`);
  return answer;
}
