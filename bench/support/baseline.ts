/**
 * BENCH_BASELINE=<git ref>: the `server` and `example` agents as they were at that ref, measured in the same run as
 * today's (before/after on one machine state: a shared machine drifts more between two runs than most changes move).
 *
 * The ref is checked out as a git worktree outside the clone, in ${NESTJS_SPOE_CACHE:-~/.cache/nestjs-spoe}/
 * bench-baseline/<commit> (reused by later runs; `git worktree remove <dir>` deletes one). Not under bench/: the
 * type check (tsconfig.json includes bench/), `eslint .` and Jest's module map would all read a second copy of the
 * repository there. Its node_modules links to this clone's packages, except `nestjs-spoe`, which stays the
 * baseline's own library; the baseline is built with this clone's TypeScript. Today's bench/agents/nest-agents.ts is
 * copied in, so that `server@<ref>` runs the same handler on the baseline's library. An agent that the baseline
 * cannot run (no dist/main.js, a library without what nest-agents.ts imports…) is skipped with the reason.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ROOT, RunningAgent, startExample, startNestAgent } from './agents';
import { CPU } from './cpus';
import { stopProcessTree } from './processes';

export interface BaselineAgent {
  /** `server@<ref>`, `example@<ref>`. */
  readonly name: string;
  readonly start: () => Promise<RunningAgent>;
}

export interface Baseline {
  readonly ref: string;
  readonly commit: string;
  readonly dir: string;
  readonly server: BaselineAgent | undefined;
  readonly example: BaselineAgent | undefined;
  /** Agents that could not run, with the reason. */
  readonly skipped: readonly string[];
}

function git(args: readonly string[], cwd = ROOT): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function cacheDir(): string {
  return process.env.NESTJS_SPOE_CACHE || join(homedir(), '.cache', 'nestjs-spoe');
}

/** The worktree of `commit`, created on first use; progress on stderr so that stdout stays the report. */
function worktree(commit: string): string {
  const dir = join(cacheDir(), 'bench-baseline', commit.slice(0, 12));
  if (existsSync(join(dir, '.git'))) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, '..'), { recursive: true });
  git(['worktree', 'prune']); // forgets a worktree whose directory was deleted by hand, which would block the add
  execFileSync('git', ['worktree', 'add', '--detach', dir, commit], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  return dir;
}

/**
 * node_modules of the baseline: a link per package of this clone's (no install, no network), except `nestjs-spoe`,
 * the workspace link, which must point at the baseline's own libs/spoe or the baseline would run today's library.
 * Rebuilt on every run: links only, so it follows this clone's node_modules as it changes.
 */
function linkNodeModules(dir: string): void {
  const target = join(dir, 'node_modules');
  rmSync(target, { recursive: true, force: true }); // removes the links, never what they point at
  mkdirSync(target);
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (entry === 'nestjs-spoe') continue;
    symlinkSync(join(ROOT, 'node_modules', entry), join(target, entry));
  }
  symlinkSync(join('..', 'libs', 'spoe'), join(target, 'nestjs-spoe'));
}

/**
 * Builds the baseline's library and example agent (incremental: a reused worktree builds in seconds); the error, if
 * any.
 */
function build(dir: string): string | undefined {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-b', 'libs/spoe/tsconfig.lib.json', 'tsconfig.app.json'], {
      cwd: dir,
      stdio: ['ignore', 2, 2],
    });
    return undefined;
  } catch (error) {
    return `its build (tsc -b libs/spoe/tsconfig.lib.json tsconfig.app.json) failed: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** Starts the agent once and stops it: what cannot run is found before the rounds, not in the middle of them. */
async function tryStart(agent: BaselineAgent): Promise<string | undefined> {
  try {
    const running = await agent.start();
    await stopProcessTree(running.child);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

async function usable(
  agent: BaselineAgent,
  precondition: string | undefined,
  skipped: string[],
): Promise<BaselineAgent | undefined> {
  const problem = precondition ?? (await tryStart(agent));
  if (problem === undefined) return agent;
  skipped.push(`${agent.name}: ${problem}`);
  console.error(`bench: baseline: skipping ${agent.name}: ${problem}`);
  return undefined;
}

/** The baseline's agents, ready to start; undefined without a ref. */
export async function prepareBaseline(ref: string | undefined): Promise<Baseline | undefined> {
  if (ref === undefined || ref.trim() === '') return undefined;
  let commit: string;
  try {
    commit = git(['rev-parse', '--verify', `${ref}^{commit}`]);
  } catch (error) {
    throw new Error(`BENCH_BASELINE=${ref} is not a commit of this repository`, { cause: error });
  }
  const dir = worktree(commit);
  linkNodeModules(dir);
  console.error(`bench: baseline ${ref} (${commit.slice(0, 12)}) in ${dir}: building`);
  const buildError = build(dir);
  const script = join(dir, 'bench', 'agents', 'nest-agents.ts');
  mkdirSync(join(dir, 'bench', 'agents'), { recursive: true });
  copyFileSync(join(ROOT, 'bench', 'agents', 'nest-agents.ts'), script);

  const skipped: string[] = [];
  const server = await usable(
    {
      name: `server@${ref}`,
      start: () => startNestAgent('server', { script, root: dir, name: `server@${ref}`, cpu: CPU.agent }),
    },
    undefined,
    skipped,
  );
  const noDist = existsSync(join(dir, 'dist', 'main.js')) ? undefined : 'no dist/main.js after the build';
  const example = await usable(
    { name: `example@${ref}`, start: () => startExample({ root: dir, name: `example@${ref}`, cpu: CPU.agent }) },
    buildError ?? noDist,
    skipped,
  );
  return { ref, commit, dir, server, example, skipped };
}
