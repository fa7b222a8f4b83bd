// The library as its users get it: packed with `npm pack` (its prepack builds it), installed from the tarball into a
// fresh Nest app with the README's install line, the README's snippets pasted into the app, compiled with the app's own
// TypeScript and tsconfig, and served behind a real HAProxy 3.4 with the README's complete configuration. Once for an
// ESM app as Nest 12's `nest new` makes it, once for a CommonJS one as Nest 11's made it, upgraded to Nest 12.
//
// The apps start from scaffolds committed in test/consumer/scaffolds (see the README there), not from `nest new` run
// here: the scaffold is then the same on every run (a CLI release does not change what is tested), no prompt can
// block, the CLI (which needs Node 22+) is neither installed nor run, and only the app's dependencies are fetched.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupAll, makeTempDir } from '../support/cleanup';
import { haproxyVersion } from '../support/haproxy-binaries';
import { HaproxyProcess } from '../support/haproxy-process';
import { httpRequest } from '../support/http';
import { freePort } from '../support/ports';
import { commandPrerequisite, describeIf } from '../support/prerequisites';
import { waitFor, WaitAborted } from '../support/wait';
import { deployFile, killAtExit, REPO_ROOT, withBuildLock } from '../example/support/example';

// npm installs from the registry: minutes on a cold cache, far less on a warm one.
jest.setTimeout(10 * 60_000);

const LIBRARY = join(REPO_ROOT, 'libs', 'spoe');
const SCAFFOLDS = join(__dirname, 'scaffolds');
const haproxy34 = haproxyVersion('3.4');
const npmRegistry = commandPrerequisite('the npm registry', ['npm', 'ping'], 'the consumer apps install from it');

/**
 * The environment of the npm and node commands run here: ours without the `npm_*` variables that `npm test` sets,
 * which describe this repository's package and would steer npm in the app's directory.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...extra };
  for (const name of Object.keys(env)) if (/^npm_/i.test(name)) delete env[name];
  return env;
}

/** Runs `command` in `cwd`; its standard output, or an error carrying all it printed. */
function run(cwd: string, command: string, args: readonly string[], timeoutMs = 5 * 60_000): string {
  const result = spawnSync(command, args, { cwd, env: cleanEnv(), encoding: 'utf8', timeout: timeoutMs });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (result.status !== 0)
    throw new Error(
      `\`${command} ${args.join(' ')}\` in ${cwd} failed (${result.status ?? result.signal}):\n${output}`,
    );
  return result.stdout;
}

/** The README's install block (`<!-- install -->`): npm commands, comments removed. */
function readmeInstallCommands(): string[][] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const block = /<!-- install -->\s*```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  if (block === undefined) throw new Error('README.md has no <!-- install --> block');
  return block
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line.length > 0)
    .map((line) => line.split(/\s+/));
}

/** What `npm pack --json` reports of the tarball. */
interface PackResult {
  readonly filename: string;
  readonly files: ReadonlyArray<{ readonly path: string }>;
}

/** Packs the library as a user's `npm pack` or `npm publish` does (prepack builds it) into `dir`. */
function packLibrary(dir: string): { tarball: string; files: string[] } {
  // Under the build lock: prepack's `tsc -b` must not write the library while another test file builds it.
  const out = withBuildLock(() => run(LIBRARY, 'npm', ['pack', '--json', '--pack-destination', dir]));
  const [result] = JSON.parse(out) as PackResult[];
  return { tarball: join(dir, result.filename), files: result.files.map((f) => f.path).sort() };
}

let tarball: string;
let files: string[];
beforeAll(() => {
  if (npmRegistry.missing !== undefined) return;
  ({ tarball, files } = packLibrary(makeTempDir('nestjs-spoe-pack-')));
});
afterAll(cleanupAll);

describeIf(npmRegistry)('the packed library (npm pack)', () => {
  it('ships its README, LICENSE and CHANGELOG, the same as the repository root has', () => {
    expect(files).toEqual(expect.arrayContaining(['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json']));
    const unpacked = unpack(tarball);
    for (const name of ['LICENSE', 'CHANGELOG.md'])
      expect(readFileSync(join(unpacked, name), 'utf8')).toBe(readFileSync(join(REPO_ROOT, name), 'utf8'));
    expect(readFileSync(join(unpacked, 'README.md'), 'utf8')).toBe(readFileSync(join(LIBRARY, 'README.md'), 'utf8'));
  });

  it('ships the build and the sources its maps point to, and nothing of the build or tests beside', () => {
    expect(files.filter((f) => /tsbuildinfo|\.spec\.ts$|^test\/|^tsconfig/.test(f))).toEqual([]);
    // Every compiled module comes from a source of today (no stale output of a removed one) …
    const compiled = files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'));
    expect(compiled.length).toBeGreaterThan(0);
    expect(compiled.filter((f) => !files.includes(f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts')))).toEqual([]);
    // … and every source a map names is in the tarball.
    const unpacked = unpack(tarball);
    const missing = files
      .filter((f) => f.endsWith('.map'))
      .flatMap((map) => {
        const { sources } = JSON.parse(readFileSync(join(unpacked, map), 'utf8')) as { sources: string[] };
        return sources.map((source) => join(map, '..', source)).filter((path) => !files.includes(path));
      });
    expect(missing).toEqual([]);
  });
});

const unpacked = new Map<string, string>();
/** The tarball extracted (once) into a new directory: its `package/` folder. */
function unpack(file: string): string {
  let dir = unpacked.get(file);
  if (dir === undefined) {
    dir = makeTempDir('nestjs-spoe-unpacked-');
    execFileSync('tar', ['-xzf', file, '-C', dir]);
    unpacked.set(file, (dir = join(dir, 'package')));
  }
  return dir;
}

/** A consumer app: the scaffold it starts from, and what makes it the app users have. */
interface ConsumerApp {
  readonly title: string;
  readonly scaffold: string;
  /** Rewrites the scaffold's package.json and tsconfig.json into the app under test (see scaffolds/README.md). */
  adapt(pkg: PackageJson, tsconfig: { compilerOptions: Record<string, unknown> }): void;
  /** Whether the app is ESM (`type: module`): checked, so that a scaffold update cannot swap the two. */
  readonly esm: boolean;
}

interface PackageJson {
  type?: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

/** Only what compiles the app: the scaffold's lint, test and CLI tooling is not what this test is about. */
function compilerOnly(pkg: PackageJson): void {
  pkg.devDependencies = {
    typescript: pkg.devDependencies.typescript,
    '@types/node': pkg.devDependencies['@types/node'],
  };
}

const APPS: ConsumerApp[] = [
  {
    title: 'an ESM app made by Nest 12 (nest new, module nodenext)',
    scaffold: 'nest-12-esm',
    esm: true,
    adapt: (pkg, tsconfig) => {
      compilerOnly(pkg);
      // vitest/globals came with vitest, which compilerOnly leaves out.
      tsconfig.compilerOptions.types = ['node'];
    },
  },
  {
    title: 'a CommonJS app made by Nest 11 (nest new), upgraded to Nest 12',
    scaffold: 'nest-11-cjs',
    esm: false,
    adapt: (pkg) => {
      compilerOnly(pkg);
      for (const name of Object.keys(pkg.dependencies))
        if (name.startsWith('@nestjs/')) pkg.dependencies[name] = '^12.0.0';
    },
  },
];

/** README snippets the app serves (its src/), and those it only compiles (src/readme/): each a file of the repository. */
const SERVED = ['test/example/readme/existing-app.ts', 'test/example/readme/health.ts', 'test/example/readme/main.ts'];
// The README's other snippets that need nothing but the install line's packages (metrics, traces and log context need
// prom-client, OpenTelemetry or pino besides; test/readme/library-snippets.e2e-spec.ts runs them in the repository).
const COMPILED = [
  'test/readme/quick-start.ts',
  'test/readme/handlers.ts',
  'test/readme/options.ts',
  'test/readme/tls.ts',
];

/**
 * Makes the app in a new directory: the scaffold adapted, the README's install commands run with `nestjs-spoe`
 * standing for the tarball, the README's snippets pasted, HealthModule imported next to SpoeModule as the README says.
 */
function makeApp(app: ConsumerApp): string {
  const dir = join(makeTempDir('nestjs-spoe-consumer-'), app.scaffold);
  cpSync(join(SCAFFOLDS, app.scaffold), dir, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
  const tsconfig = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: Record<string, unknown>;
  };
  expect(pkg.type === 'module').toBe(app.esm);
  app.adapt(pkg, tsconfig);
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));

  for (const [npm, verb, ...packages] of readmeInstallCommands()) {
    expect([npm, verb]).toEqual(['npm', 'install']);
    const args = packages.map((p) => (p === 'nestjs-spoe' ? tarball : p));
    run(dir, 'npm', ['install', ...args, '--no-audit', '--no-fund', '--prefer-offline']);
  }

  for (const file of SERVED) cpSync(join(REPO_ROOT, file), join(dir, 'src', file.split('/').pop()!));
  mkdirSync(join(dir, 'src', 'readme'));
  for (const file of COMPILED) cpSync(join(REPO_ROOT, file), join(dir, 'src', 'readme', file.split('/').pop()!));
  // README, Health: "add HealthModule to the imports of the module that has SpoeModule.forRoot or forRootAsync".
  const appFile = join(dir, 'src', 'existing-app.ts');
  const source = readFileSync(appFile, 'utf8');
  expect(source.match(/imports: \[SpoeModule\./g)).toHaveLength(1);
  writeFileSync(
    appFile,
    `import { HealthModule } from './health.js';\n${source.replace('imports: [SpoeModule.', 'imports: [HealthModule, SpoeModule.')}`,
  );
  return dir;
}

/** The app's own compiler, with the app's own build settings (what `nest build` runs). */
function compile(dir: string, ...extra: string[]): string {
  return run(dir, process.execPath, [
    join(dir, 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    'tsconfig.build.json',
    ...extra,
  ]);
}

/** `node dist/main.js` (the scaffold's start:prod) with the ports; resolves once /health/live answers. */
async function startApp(
  dir: string,
  spoePort: number,
  httpPort: number,
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [join(dir, 'dist', 'main.js')], {
    cwd: dir,
    env: cleanEnv({ SPOE_PORT: String(spoePort), PORT: String(httpPort) }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killAtExit(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  await waitFor(
    'the app to serve /health/live',
    async () => {
      if (child.exitCode !== null) throw new WaitAborted(`the app exited (${child.exitCode}):\n${output}`);
      return (await httpRequest({ host: '127.0.0.1', port: httpPort, path: '/health/live' })).status === 200;
    },
    60_000,
    200,
  );
  return { child, output: () => output };
}

async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGKILL');
  await exited;
}

describeIf(npmRegistry, haproxy34.prerequisite)('nestjs-spoe installed from its tarball into a fresh Nest app', () => {
  for (const app of APPS) {
    it(`${app.title}: installs, compiles the README's snippets, and serves HAProxy 3.4 a decision, /health and spoe-health`, async () => {
      const dir = makeApp(app);
      expect(JSON.parse(readFileSync(join(dir, 'node_modules', 'nestjs-spoe', 'package.json'), 'utf8'))).toMatchObject({
        name: 'nestjs-spoe',
      });

      compile(dir);
      expect(existsSync(join(dir, 'dist', 'main.js'))).toBe(true);
      expect(readdirSync(join(dir, 'dist', 'readme')).filter((f) => f.endsWith('.js'))).toHaveLength(COMPILED.length);
      if (!app.esm) {
        // Older apps resolve modules the node10 way, which ignores `exports`: typesVersions maps the subpaths there.
        compile(
          dir,
          '--noEmit',
          '--module',
          'commonjs',
          '--moduleResolution',
          'node',
          '--resolvePackageJsonExports',
          'false',
        );
      }

      const [spoePort, httpPort, haproxyPort] = [
        await freePort(['127.0.0.1']),
        await freePort(['127.0.0.1']),
        await freePort(['127.0.0.1']),
      ];
      const { child, output } = await startApp(dir, spoePort, httpPort);
      try {
        const haproxy = await HaproxyProcess.start({
          binary: haproxy34.binary!,
          files: { 'haproxy.cfg': deployFile('haproxy-standalone.cfg'), 'spoe.conf': deployFile('spoe.conf') },
          vars: {
            HAPROXY_BIND: `127.0.0.1:${haproxyPort}`,
            BACKEND_ADDR: `127.0.0.1:${httpPort}`,
            AGENT_ADDR: `127.0.0.1:${spoePort}`,
          },
          waitForTcp: [{ host: '127.0.0.1', port: haproxyPort }],
        });
        try {
          // Through HAProxy: this client scored 0 and let through to the app's readiness, which probes SPOE itself …
          const ready = await httpRequest({ host: '127.0.0.1', port: haproxyPort, path: '/health/ready' });
          expect(ready.status).toBe(200);
          expect(JSON.parse(ready.body)).toMatchObject({
            status: 'ok',
            details: { spoe: { status: 'up', listening: true } },
          });
          // … and one from 10.1.2.3 scored 100 by the agent and denied by HAProxy.
          const denied = await httpRequest({
            host: '127.0.0.1',
            port: haproxyPort,
            path: '/health/ready',
            headers: { 'x-forwarded-for': '10.1.2.3' },
          });
          expect(denied.status).toBe(403);
          expect(haproxy.unexpectedProblems()).toEqual([]);
        } finally {
          await haproxy.stop();
        }

        // The package's bin, as installed: healthy against the app, unhealthy (1) where nothing listens.
        const bin = join(dir, 'node_modules', '.bin', 'spoe-health');
        expect(run(dir, bin, ['--host', '127.0.0.1', '--port', String(spoePort), '--timeout', '5000'])).toMatch(
          /^healthy: /,
        );
        const closed = spawnSync(
          bin,
          ['--host', '127.0.0.1', '--port', String(await freePort(['127.0.0.1'])), '--quiet'],
          {
            env: cleanEnv(),
            timeout: 30_000,
          },
        );
        expect(closed.status).toBe(1);
      } catch (error) {
        throw new Error(`${(error as Error).message}\n--- the app's output:\n${output()}`, { cause: error });
      } finally {
        await stopApp(child);
      }
    });
  }
});
