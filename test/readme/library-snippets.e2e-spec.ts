// The README's library sections run: every code block there is one of these files, and README.md marks it with
// `<!-- snippet: path -->` (test/example/readme.e2e-spec.ts checks that the README shows the file verbatim).
import { Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { context, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { SetVar, SpoeDataType, SpoeIp, SpoeModule, SpoeServer } from 'nestjs-spoe';
import { Logger as PinoLogger } from 'nestjs-pino';
import { Writable } from 'node:stream';
import { SpoeClient, SpoeClientOptions } from 'nestjs-spoe/testing';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent } from '../support/agent';
import { makeTestPki, OPENSSL, TestPki } from '../support/certificates';
import { makeTempDir } from '../support/cleanup';
import { describeIf } from '../support/prerequisites';
import { freePort } from '../support/ports';
import { sample, scrape } from '../support/prometheus';
import { HandlersController } from './handlers';
import { ScoreController, ScoreService, pinoLogging } from './log-context';
import { MetricsAppModule } from './metrics';
import { startTracing, TracedAppModule } from './tracing';
import { server } from './options';
import { createTlsServer, reloadTls } from './tls';
import { main } from './quick-start';

describe('README: quick start (test/readme/quick-start.ts)', () => {
  it('main() serves check-client-ip on the given port', async () => {
    Logger.overrideLogger(false);
    const port = await freePort(['127.0.0.1']);
    const app = await main(port);
    const client = await SpoeClient.connect({ port });
    try {
      expect(
        (await client.notify('check-client-ip', { ip: SpoeIp.parse('::ffff:10.9.9.9') })).map((a) => [a.name, a.value]),
      ).toEqual([
        ['ip_score', 100],
        ['checked_by', 'check-client-ip'],
      ]);
    } finally {
      await client.close();
      await app.close();
      Logger.overrideLogger(['log', 'error', 'warn']);
    }
  });
});

describe('README: handlers (test/readme/handlers.ts)', () => {
  it('shows each return shape, typed values, raw bytes, deadlines and events at work', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const agent = await startAgent(
      { controllers: [HandlersController] },
      { errorVariable: { scope: 2, name: 'agent_error' } },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect(await client.notify('inspect-request', { path: '/a/b', ua: 'curl/8' })).toEqual([
        expect.objectContaining({ name: 'path_len', value: 4 }),
        expect.objectContaining({ name: 'ua_bytes', value: 6 }),
        expect.objectContaining({ name: 'big', value: 2n ** 63n, dataType: SpoeDataType.Uint64 }),
        expect.objectContaining({ name: 'stale_flag' }),
      ]);
      expect((await client.notify('classify')).map((a) => a.name)).toEqual(['class', 'confidence']);
      // The ACK carries the deadline flag (2, what HAProxy reads) and not the handler's action: it left at the
      // deadline,
      // not when the handler finished.
      expect(await client.notify('slow-lookup')).toEqual([expect.objectContaining({ name: 'agent_error', value: 2 })]);
      expect(await client.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1') })).toEqual([]);
    } finally {
      await client.close();
      await agent.close();
      jest.restoreAllMocks();
    }
  });
});

describe('README: metrics (test/readme/metrics.ts)', () => {
  it('serves the series of the app’s SpoeServer on GET /metrics', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined); // no handler for the message sent
    const spoePort = await freePort(['127.0.0.1']);
    process.env.SPOE_PORT = String(spoePort);
    const app = await NestFactory.create(MetricsAppModule, { logger: ['error'] });
    delete process.env.SPOE_PORT;
    try {
      app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
      await app.startAllMicroservices();
      await app.listen(0, '127.0.0.1');
      const client = await SpoeClient.connect({ port: spoePort });
      await client.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1') });
      await client.close();
      const text = await scrape(await app.getUrl());
      expect(sample(text, 'spoe_hellos_total', { outcome: 'accepted' })).toBe(1);
      expect(sample(text, 'spoe_messages_total', { message: '(unhandled)', outcome: 'unhandled' })).toBe(1);
    } finally {
      await app.close();
      jest.restoreAllMocks();
    }
  });
});

describe('README: traces (test/readme/tracing.ts)', () => {
  afterEach(() => {
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it('exports a span per message that continues the traceparent argument', async () => {
    const exporter = new InMemorySpanExporter();
    const provider = startTracing(exporter);
    const spoePort = await freePort(['127.0.0.1']);
    process.env.SPOE_PORT = String(spoePort);
    const app = await NestFactory.create(TracedAppModule, { logger: ['error'] });
    delete process.env.SPOE_PORT;
    try {
      app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
      await app.startAllMicroservices();
      const client = await SpoeClient.connect({ port: spoePort });
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      expect(await client.notify('check-client-ip', { ip: SpoeIp.parse('192.0.2.1'), traceparent })).toEqual([
        expect.objectContaining({ name: 'ip_score', value: 0 }),
      ]);
      await client.close();
      await provider.forceFlush();
      const [span] = exporter.getFinishedSpans();
      expect(span.name).toBe('spoe check-client-ip');
      expect(span.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
      expect(span.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
    } finally {
      await app.close();
      await provider.shutdown();
    }
  });
});

describe('README: log context (test/readme/log-context.ts)', () => {
  it("puts the message's fields in the JSON lines of nestjs-pino, from a service called across await", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const spoePort = await freePort(['127.0.0.1']);
    @Module({
      imports: [
        SpoeModule.forRoot({ host: '127.0.0.1', port: spoePort, messageContext: true }),
        pinoLogging(destination),
      ],
      controllers: [ScoreController],
      providers: [ScoreService],
    })
    class PinoAppModule {}
    const app = await NestFactory.create(PinoAppModule, { bufferLogs: true });
    app.useLogger(app.get(PinoLogger)); // as nestjs-pino says: Nest's Logger writes through pino
    try {
      app.connectMicroservice({ strategy: app.get(SpoeServer) }, { inheritAppConfig: true });
      await app.startAllMicroservices();
      const client = await SpoeClient.connect({ port: spoePort, engineId: 'edge-1' });
      await client.notifyMessages([{ name: 'check-client-ip', args: { ip: SpoeIp.parse('192.0.2.7') } }], {
        streamId: 21,
        frameId: 3,
      });
      await client.close();
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 40, // pino's warn
          context: 'ScoreService',
          msg: '192.0.2.7 scored from engine edge-1',
          spoeMessage: 'check-client-ip',
          streamId: 21,
          frameId: 3,
          peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
          engineId: 'edge-1',
        }),
      );
    } finally {
      await app.close();
    }
  });
});

describe('README: transport options (test/readme/options.ts)', () => {
  it('builds a server with those options', () => {
    expect(server.options).toMatchObject({
      port: 12345,
      maxFrameSize: 16380,
      handlerDeadlineMs: 1000,
      errorVariable: { name: 'agent_error' },
    });
  });
});

describeIf(OPENSSL)('README: TLS (test/readme/tls.ts)', () => {
  @Module({})
  class NoHandlers {}

  it('serves mutual TLS from the files; SIGHUP reloads them, and files that do not work change nothing', async () => {
    const [pki, renewed, dir] = [makeTestPki(makeTempDir()), makeTestPki(makeTempDir()), makeTempDir()];
    /** The agent's files of `from`, its key replaced by `key`. */
    const install = (from: TestPki, key = from.server.keyFile): void => {
      copyFileSync(from.server.certFile, join(dir, 'agent.pem'));
      copyFileSync(key, join(dir, 'agent.key'));
      copyFileSync(from.caFile, join(dir, 'ca.pem'));
    };
    const haproxy = (from: TestPki) => ({ ca: from.ca, cert: from.client.cert, key: from.client.key });
    const connects = (port: number, tls: SpoeClientOptions['tls']): Promise<boolean> =>
      SpoeClient.connect({ port, tls, timeoutMs: 5000 }).then(
        (client) => client.close().then(() => true),
        () => false,
      );
    const port = await freePort(['127.0.0.1']);
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    install(pki);
    const listeners = process.listeners('SIGHUP');
    const server = createTlsServer(dir, port);
    const app = await NestFactory.createMicroservice(NoHandlers, { strategy: server, logger: false });
    await app.listen();
    try {
      expect(await connects(port, haproxy(pki))).toBe(true);
      expect(await connects(port, { ca: pki.ca })).toBe(false);
      const live = await SpoeClient.connect({ port, tls: haproxy(pki), timeoutMs: 5000 });

      install(renewed);
      process.emit('SIGHUP', 'SIGHUP');
      expect(await connects(port, haproxy(renewed))).toBe(true);
      expect(await connects(port, haproxy(pki))).toBe(false);

      install(pki, renewed.server.keyFile);
      reloadTls(server, dir);
      expect(error).toHaveBeenCalledWith(
        expect.stringMatching(/^TLS certificates not reloaded: .*key values mismatch/),
      );
      expect(await connects(port, haproxy(renewed))).toBe(true);
      expect(await live.close()).toMatchObject({ status: 0 });
    } finally {
      for (const listener of process.listeners('SIGHUP'))
        if (!listeners.includes(listener)) process.off('SIGHUP', listener);
      error.mockRestore();
      await app.close();
    }
  });
});

describe('README.md', () => {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
  // The package's README (libs/spoe/README.md, what npm shows) is held to the same rule.
  const packageReadme = readFileSync(join(__dirname, '..', '..', 'libs', 'spoe', 'README.md'), 'utf8');

  // `install`: the install line, which test/consumer runs.
  it.each([
    ['README.md', readme],
    ['libs/spoe/README.md', packageReadme],
  ])(
    '%s has no code block that no test checks: each one is marked as a snippet, commands, a script, output, layout or install',
    (_name, text) => {
      const lines = text.split('\n');
      const unmarked: string[] = [];
      let opened = 0;
      let inside = false;
      lines.forEach((line, i) => {
        if (!line.startsWith('```')) return;
        if (!inside) {
          opened++;
          if (!/^<!-- (snippet: \S+|commands|script|output|layout|install) -->$/.test(lines[i - 1] ?? ''))
            unmarked.push(`line ${i + 1}: ${lines[i - 1]}`);
        }
        inside = !inside;
      });
      expect(opened).toBeGreaterThan(5);
      expect(unmarked).toEqual([]);
    },
  );

  it('quotes every SPOE_DEFAULTS value it documents in the options table', () => {
    const row = (name: string): string | undefined =>
      readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
    for (const [name, value] of Object.entries(new SpoeServer().options).filter(
      ([k]) => !['capabilities', 'errorVariable', 'path', 'tls'].includes(k),
    )) {
      expect(row(name)).toContain(`\`${String(value)}\``);
    }
    // Options without a default value have their row too.
    for (const name of ['errorVariable', 'path', 'tls']) expect(row(name)).toBeDefined();
  });

  it('lists folders of the repository layout that exist', () => {
    const block = /<!-- layout -->\n```\n([\s\S]*?)```/.exec(readme)![1];
    let base = '';
    for (const line of block.split('\n')) {
      const folder = /^(\s*)(\S+\/)\s/.exec(line + ' ');
      if (!folder) continue;
      if (folder[1].length === 0 && folder[2].endsWith('src/') && folder[2].split('/').length > 2) base = folder[2];
      const path = folder[1].length > 0 ? base + folder[2] : folder[2];
      expect(existsSync(join(__dirname, '..', '..', path))).toBe(true);
    }
  });

  it('names the actions API as it is exported', () => {
    expect(readme).toContain('SetVar.sess(');
    expect(typeof SetVar.sess).toBe('function');
  });
});
