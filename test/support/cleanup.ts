/**
 * What tests start outside Jest's reach — HAProxy processes, child processes, temporary directories — so that none
 * outlives its test file: {@link cleanupAll} (in a top-level `afterAll`) stops and removes it all, and a process
 * 'exit' handler kills what still runs and removes the directories, synchronously, as a last resort (a crashed file,
 * a forgotten process).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInThisContext } from 'node:vm';

/** Something to stop: `stop` by {@link cleanupAll}, `kill` (synchronous) at process exit. */
export interface Stoppable {
  stop?(): Promise<void>;
  kill(): void;
}

const tracked = new Set<Stoppable>();
const tempDirs = new Set<string>();
let exitHandlerInstalled = false;

/**
 * The real `process` object. Inside a Jest test environment, the global `process` is a copy whose listeners the real
 * process never calls, so an 'exit' handler must be registered on the real one (reached from the main context).
 */
function realProcess(): NodeJS.Process {
  try {
    return runInThisContext('process') as NodeJS.Process;
  } catch {
    return process;
  }
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  realProcess().on('exit', () => {
    for (const resource of tracked) {
      try {
        resource.kill();
      } catch {
        // keep going: every process and directory gets its chance
      }
    }
    for (const dir of tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // idem
      }
    }
  });
}

/** Tracks `resource` until the returned function is called (when it has stopped by itself). */
export function trackForCleanup(resource: Stoppable): () => void {
  installExitHandler();
  tracked.add(resource);
  return () => tracked.delete(resource);
}

/** A new private temporary directory, removed by {@link cleanupAll} (and at process exit). */
export function makeTempDir(prefix = 'nestjs-spoe-e2e-'): string {
  installExitHandler();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by {@link makeTempDir}. */
export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Stops everything tracked that has a `stop` (HAProxy processes: SIGTERM, then SIGKILL after a grace period) and
 * removes the temporary directories. Safe to call more than once; meant for a top-level `afterAll`.
 */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...tracked].map((resource) => resource.stop?.()));
  for (const dir of [...tempDirs]) removeTempDir(dir);
}
