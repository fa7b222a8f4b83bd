/**
 * Which HAProxy binaries the tests run against: HAProxy 2.6, 3.0, 3.2 and 3.4 as scripts/provision-haproxy.sh
 * provisions them, or only `HAPROXY_BIN` when it is set. {@link describeEachHaproxy} runs a suite on each;
 * {@link haproxyVersion} gives one version, or the prerequisite it is (see prerequisites.ts) when it is missing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describeIf, Prerequisite } from './prerequisites';

/** HAProxy versions (major.minor) the suites run against by default. */
const HAPROXY_VERSIONS = ['2.6', '3.0', '3.2', '3.4'] as const;

const PROVISION_SCRIPT = join(resolve(__dirname, '..', '..'), 'scripts', 'provision-haproxy.sh');

/** One runnable HAProxy. */
export interface HaproxyBinary {
  /** major.minor, e.g. "3.2". */
  readonly version: string;
  /** The full version string, e.g. "3.2.26-1". */
  readonly fullVersion: string;
  /** Executable (the provisioned wrapper, or `HAPROXY_BIN`). */
  readonly path: string;
}

/**
 * True for HAProxy 3.1+, where SPOE runs over the SPOP multiplexer (`mode spop` backends, one SPOP stream per NOTIFY).
 */
export function isSpopMux(version: string): boolean {
  const [major, minor] = version.split('.').map(Number);
  return major > 3 || (major === 3 && minor >= 1);
}

/** Runs `<binary> -v` and returns its major.minor and full version; throws when it does not run. */
export function detectHaproxyVersion(path: string): { version: string; fullVersion: string } {
  const out = execFileSync(path, ['-v'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const match = /HA-?Proxy version (\d+)\.(\d+)(\S*)/.exec(out);
  if (!match) throw new Error(`${path} -v printed no HAProxy version: ${out.slice(0, 200)}`);
  return { version: `${match[1]}.${match[2]}`, fullVersion: `${match[1]}.${match[2]}${match[3]}` };
}

/** HAProxy `version`: its binary, and the prerequisite it is (met when the binary is there). */
export interface HaproxyVersion {
  readonly binary: HaproxyBinary | undefined;
  readonly prerequisite: Prerequisite;
}

let fromEnv: HaproxyBinary | undefined;
let canProvision: boolean | undefined;
const provisioned = new Map<string, HaproxyVersion>();

/** The binary of `HAPROXY_BIN`, when set; throws when it does not run. */
function haproxyFromEnv(): HaproxyBinary | undefined {
  const path = process.env.HAPROXY_BIN;
  if (!path) return undefined;
  return (fromEnv ??= { ...detectHaproxyVersion(path), path });
}

/** Reason why no HAProxy can be had at all here, if so: no HAPROXY_BIN, and no apt-get for provision-haproxy.sh. */
function noHaproxyAtAll(): string | undefined {
  if (process.env.HAPROXY_BIN) return undefined;
  canProvision ??= spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  return canProvision ? undefined : 'HAPROXY_BIN is not set and apt-get is not available to provision HAProxy';
}

/**
 * HAProxy `version` (major.minor): `HAPROXY_BIN` when it is set (a missing prerequisite if it is another version), else
 * provisioned by scripts/provision-haproxy.sh (cached after the first time). A version that cannot be provisioned is a
 * broken prerequisite: its tests fail, in CI or not.
 */
export function haproxyVersion(version: string): HaproxyVersion {
  const name = `HAProxy ${version}`;
  const env = haproxyFromEnv();
  if (env) {
    if (env.version === version) return { binary: env, prerequisite: { name, missing: undefined } };
    const missing = `HAPROXY_BIN (${env.path}) is HAProxy ${env.fullVersion}`;
    // Not a gap in CI: HAPROXY_BIN asks for that one binary, and describeEachHaproxy runs only it too.
    return {
      binary: undefined,
      prerequisite: {
        name,
        missing,
        optionalInCi: 'HAPROXY_BIN narrows the HAProxy tests to its one binary on purpose',
      },
    };
  }
  const none = noHaproxyAtAll();
  if (none !== undefined) return { binary: undefined, prerequisite: { name, missing: none } };
  let result = provisioned.get(version);
  if (!result) {
    result = provision(version);
    provisioned.set(version, result);
  }
  return result;
}

function provision(version: string): HaproxyVersion {
  const name = `HAProxy ${version}`;
  try {
    const path = execFileSync('bash', [PROVISION_SCRIPT, '--print-path', version], {
      encoding: 'utf8',
      timeout: 15 * 60_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
    const detected = detectHaproxyVersion(path);
    if (detected.version !== version) throw new Error(`${path} is HAProxy ${detected.fullVersion}, not ${version}`);
    return { binary: { ...detected, path }, prerequisite: { name, missing: undefined } };
  } catch (error) {
    const stderr = (error as { stderr?: Buffer | string }).stderr;
    const missing = `it could not be provisioned: ${(error as Error).message}${stderr ? `\n${String(stderr).slice(-2000)}` : ''}`;
    return { binary: undefined, prerequisite: { name, missing, broken: true } };
  }
}

/**
 * `describe` once per HAProxy binary — `HAPROXY_BIN` alone, or each of 2.6, 3.0, 3.2 and 3.4 (or of `versions`) — titled
 * `<title> — HAProxy <full version>`. Without any HAProxy, a missing prerequisite (skipped, failing under `CI=true`);
 * a version that could not be provisioned becomes a failing test carrying the provisioning error.
 */
export function describeEachHaproxy(
  title: string,
  body: (binary: HaproxyBinary) => void,
  /** The versions to run on when HAPROXY_BIN is not set (default: all four). */
  versions: readonly string[] = HAPROXY_VERSIONS,
): void {
  let env: HaproxyBinary | undefined;
  try {
    env = haproxyFromEnv();
  } catch (error) {
    describe(title, () => {
      it('has an HAProxy to test against', () => {
        throw error;
      });
    });
    return;
  }
  const none = noHaproxyAtAll();
  if (none !== undefined) {
    describeIf({ name: 'HAProxy', missing: none })(title, () => undefined);
    return;
  }
  for (const version of env ? [env.version] : versions) {
    const { binary, prerequisite } = haproxyVersion(version);
    describeIf(prerequisite)(`${title} — HAProxy ${binary?.fullVersion ?? version}`, () => body(binary!));
  }
}
