/** The HAProxy binaries of the benches, provisioned by scripts/provision-haproxy.sh like the tests' own. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { detectHaproxyVersion, HaproxyBinary } from '../../test/support/haproxy-binaries';
import { ROOT } from '../support/agents';

const PROVISION_SCRIPT = join(ROOT, 'scripts', 'provision-haproxy.sh');

export interface Haproxy extends HaproxyBinary {
  /** `haproxy -v`'s first line. */
  readonly versionLine: string;
}

/** Each version through scripts/provision-haproxy.sh (a no-op once cached), so that a fresh clone works too. */
export function provisionHaproxy(version: string): Haproxy {
  let path: string;
  try {
    path = execFileSync('bash', [PROVISION_SCRIPT, '--print-path', version], {
      encoding: 'utf8',
      timeout: 15 * 60_000,
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  } catch (error) {
    throw new Error(`HAProxy ${version} could not be provisioned by scripts/provision-haproxy.sh (see above)`, {
      cause: error,
    });
  }
  const detected = detectHaproxyVersion(path);
  if (detected.version !== version) throw new Error(`${path} is HAProxy ${detected.fullVersion}, not ${version}`);
  const versionLine = execFileSync(path, ['-v'], { encoding: 'utf8' }).split('\n')[0].trim();
  return { ...detected, path, versionLine };
}
