/**
 * The SPOE agent used by the HAProxy e2e suites, built only with the public API of nestjs-spoe
 * ({@link startHaproxyAgent}), the HAProxy configuration that talks to it (the templates config/haproxy.cfg and
 * config/spoe.conf, their values from {@link haproxyVars}), and the whole agent + HTTP backend + HAProxy stack on free
 * ports ({@link startStack}).
 *
 * Messages (see config/spoe.conf for the matching `spoe-message` sections):
 * - `check-client-ip` (args `ip`, `rid`, `traceparent`, on-frontend-http-request, except for /nospoe): sets `sess.ip_score` (INT32) to 100 for 10.0.0.0/8,
 *   fd00::/8 and ::ffff:10.0.0.0/104, else 5; `txn.ip_family` to the family it received ("ipv4", "ipv6" or
 *   "ipv4-mapped") and `txn.ip_seen` to the address.
 * - `audit` (same event as check-client-ip, so in the same NOTIFY): only recorded. /nospoe sends no message at all.
 * - `echo` (same event, only for /echo): every non-NULL argument comes back as a `txn` variable with the same name and
 *   the same wire type. NULL arguments are skipped, so the variable stays unset.
 * - `echo-check` (on-backend-http-request, /echo only): receives the variables `echo` set (`var(txn.iprep.*)`), so the
 *   agent sees which type HAProxy stored for each; answers `txn.types` = "name=TYPE,…".
 * - `group-msg`: only sent through `http-request send-spoe-group agent grp`; sets `txn.group_seen` = 1.
 * - `boom`: throws. `slow`: never resolves, deadline 50 ms. Both make the library acknowledge at once with its error
 *   variable `txn.agent_error` (1 failure, 2 deadline) and the actions of the messages that succeeded.
 *
 * Every message is traced (SpoeTracing, spans in `recorder.spans`) and recorded (name, `rid` argument, STREAM-ID, FRAME-ID, connection, negotiated capabilities, typed
 * arguments) in an {@link AgentRecorder}, which outlives agent restarts.
 */
import { Controller, DynamicModule, Inject, Module } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  SetVar,
  SpoeContext,
  SpoeDataType,
  SpoeDisconnectEvent,
  SpoeIp,
  SpoeTlsOptions,
  SpoeValue,
  TypedData,
  VarScope,
} from 'nestjs-spoe';
import { propagation } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { SpoeTracing } from 'nestjs-spoe/tracing';
import { startAgent, TestAgent } from '../support/agent';
import { makeTempDir, removeTempDir } from '../support/cleanup';
import { haproxyCli, showStat } from '../support/haproxy-admin';
import { HaproxyBinary, isSpopMux } from '../support/haproxy-binaries';
import { TemplateVars } from '../support/haproxy-config';
import { HaproxyProcess } from '../support/haproxy-process';
import { httpRequest, HttpResponse } from '../support/http';
import { HttpBackend, startHttpBackend } from '../support/http-backend';
import { makeTestPki, TestPki } from '../support/certificates';
import { freePort, hasIpv6Loopback } from '../support/ports';
import { waitFor } from '../support/wait';

// ------------------------------------------------------------------------------------------------------------------
// Recording
// ------------------------------------------------------------------------------------------------------------------

/** One argument as the agent received it. */
interface RecordedArgument {
  readonly name: string;
  /** Wire type name (SpoeDataType key: "String", "Int64", "Ipv6", …). */
  readonly type: string;
  readonly value: SpoeValue;
}

/** One SPOE message as the agent received it. */
export interface MessageRecord {
  readonly message: string;
  /** The `rid` argument (the X-Request-Id header of the HTTP request), when sent. */
  readonly rid: string | undefined;
  readonly streamId: string;
  readonly frameId: string;
  /** HAProxy's end of the connection ("address:port", or the Unix socket path). */
  readonly connection: string;
  /** Capabilities negotiated on that connection. */
  readonly capabilities: readonly string[];
  /** The CN of HAProxy's verified client certificate (mutual TLS), undefined without one. */
  readonly peer: string | undefined;
  readonly args: readonly RecordedArgument[];
}

/** Collects what the agent received; shared across restarts of the agent. */
export class AgentRecorder {
  readonly records: MessageRecord[] = [];
  /** The spans of the agent's messages (nestjs-spoe/tracing), exported as they end. */
  readonly spans = new InMemorySpanExporter();
  readonly tracing = new SpoeTracing({
    tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(this.spans)] }),
  });
  /** Connections that completed their HELLO (`connection` events of the transport; health checks excluded). */
  connections = 0;
  /** Every `disconnect` event of the transport: how each connection ended. */
  readonly disconnects: SpoeDisconnectEvent[] = [];

  /**
   * Disconnections that reveal a protocol problem on either side: an AGENT-DISCONNECT with a non-zero status, or a
   * HAPROXY-DISCONNECT with one.
   */
  abnormalDisconnects(): SpoeDisconnectEvent[] {
    return this.disconnects.filter(
      (d) => (d.status !== undefined && d.status !== 0) || /HAPROXY-DISCONNECT status [1-9]/.test(d.reason),
    );
  }

  /** Records of one HTTP request (by its X-Request-Id), in arrival order. */
  byRid(rid: string): MessageRecord[] {
    return this.records.filter((r) => r.rid === rid);
  }

  /** Records of one message name. */
  byMessage(message: string): MessageRecord[] {
    return this.records.filter((r) => r.message === message);
  }

  record(message: string, ctx: SpoeContext): MessageRecord {
    // BINARY values are views on the received frame: keep copies.
    const args = ctx.getArguments().map((a) => ({
      name: a.name,
      type: SpoeDataType[a.type],
      value: Buffer.isBuffer(a.value) ? Buffer.from(a.value) : a.value,
    }));
    const rid = ctx.getArguments().find((a) => a.name === 'rid')?.value;
    const record: MessageRecord = {
      message,
      rid: typeof rid === 'string' ? rid : undefined,
      streamId: String(ctx.getStreamId()),
      frameId: String(ctx.getFrameId()),
      connection: ctx.getRemoteAddress(),
      capabilities: ctx.getSettings().capabilities,
      peer: ctx.getPeerCertificate()?.subject.CN?.toString(),
      args,
    };
    this.records.push(record);
    return record;
  }
}

const RECORDER = Symbol('AgentRecorder');

// ------------------------------------------------------------------------------------------------------------------
// The agent
// ------------------------------------------------------------------------------------------------------------------

/** The score the agent gives an address: 100 for 10.0.0.0/8, fd00::/8 and ::ffff:10.0.0.0/104, else 5. */
function scoreOf(ip: SpoeIp): number {
  const v4 = ip.unmapped();
  if (v4.family === 4) return v4.bytes[0] === 10 ? 100 : 5;
  return ip.bytes[0] === 0xfd ? 100 : 5;
}

/** "ipv4", "ipv6" or "ipv4-mapped" (an IPV6 value of the form ::ffff:a.b.c.d). */
function familyOf(ip: SpoeIp): 'ipv4' | 'ipv6' | 'ipv4-mapped' {
  if (ip.family === 4) return 'ipv4';
  return ip.isV4Mapped ? 'ipv4-mapped' : 'ipv6';
}

@Controller()
class AgentController {
  constructor(@Inject(RECORDER) private readonly recorder: AgentRecorder) {}

  @MessagePattern('check-client-ip')
  checkClientIp(@Payload('ip') ip: unknown, @Ctx() ctx: SpoeContext): SetVar[] {
    this.recorder.record('check-client-ip', ctx);
    if (!(ip instanceof SpoeIp)) return [SetVar.txn('ip_family', 'none')];
    return [
      SetVar.sess('ip_score', TypedData.int32(scoreOf(ip))),
      SetVar.txn('ip_family', familyOf(ip)),
      SetVar.txn('ip_seen', ip.toString()),
    ];
  }

  @MessagePattern('audit')
  audit(@Ctx() ctx: SpoeContext): void {
    this.recorder.record('audit', ctx);
  }

  @MessagePattern('echo')
  echo(@Ctx() ctx: SpoeContext): SetVar[] {
    this.recorder.record('echo', ctx);
    const actions: SetVar[] = [];
    for (const arg of ctx.getArguments()) {
      // A NULL argument (a missing sample) leaves the variable unset.
      if (arg.type !== SpoeDataType.Null) actions.push(SetVar.txn(arg.name, arg.typed()));
    }
    return actions;
  }

  @MessagePattern('echo-check')
  echoCheck(@Ctx() ctx: SpoeContext): SetVar {
    this.recorder.record('echo-check', ctx);
    const types = ctx
      .getArguments()
      .filter((a) => a.name !== 'rid')
      .map((a) => `${a.name}=${SpoeDataType[a.type]}`)
      .join(',');
    return SetVar.txn('types', types);
  }

  @MessagePattern('group-msg')
  group(@Ctx() ctx: SpoeContext): SetVar {
    this.recorder.record('group-msg', ctx);
    return SetVar.txn('group_seen', TypedData.int32(1));
  }

  @MessagePattern('boom')
  boom(@Ctx() ctx: SpoeContext): never {
    this.recorder.record('boom', ctx);
    throw new Error('boom: this handler always fails');
  }

  @MessagePattern('slow', { deadline: 50 })
  slow(@Ctx() ctx: SpoeContext): Promise<never> {
    this.recorder.record('slow', ctx);
    return new Promise<never>(() => undefined);
  }
}

@Module({})
class AgentModule {
  static register(recorder: AgentRecorder): DynamicModule {
    return {
      module: AgentModule,
      controllers: [AgentController],
      providers: [{ provide: RECORDER, useValue: recorder }],
    };
  }
}

/** Where the agent listens: a TCP port on 127.0.0.1 or a Unix socket path. */
export type AgentEndpoint = { readonly host: string; readonly port: number } | { readonly path: string };

/** A running agent: a {@link TestAgent} with its recorder and endpoint. */
export interface RunningAgent extends TestAgent {
  readonly recorder: AgentRecorder;
  /** The endpoint it actually listens on (the chosen port when 0 was asked). */
  readonly endpoint: AgentEndpoint;
}

/**
 * Starts the agent (test/support/agent.ts, the module as it is: Nest's generic pipeline) on 127.0.0.1:`listen.port`
 * (0: a free port) or the Unix socket `listen.path`, recording into `recorder` (reused across a stop/start); `async`:
 * whether it announces the async capability (default: the library's, false).
 */
async function startHaproxyAgent(
  listen: { readonly port: number } | { readonly path: string },
  recorder: AgentRecorder,
  async: boolean | undefined,
  tls: SpoeTlsOptions | undefined,
): Promise<RunningAgent> {
  const agent = await startAgent(
    AgentModule.register(recorder),
    {
      ...('path' in listen ? { path: listen.path } : { port: listen.port }),
      // The library's error variable, as HAProxy reads it: var(txn.iprep.agent_error).
      errorVariable: { scope: VarScope.Transaction, name: 'agent_error' },
      ...(async !== undefined ? { async } : {}),
      ...(tls && { tls }),
      // Tests stop and restart agents: keep shutdowns short.
      drainTimeoutMs: 1000,
      disconnectLingerMs: 200,
    },
    {
      configure: (_app, server) => {
        recorder.tracing.attach(server);
        server.on('connection', () => recorder.connections++);
        server.on('disconnect', (event) => recorder.disconnects.push(event));
      },
    },
  );
  const address = agent.server.address;
  return {
    ...agent,
    recorder,
    endpoint: typeof address === 'string' ? { path: address } : { host: '127.0.0.1', port: agent.port },
  };
}

// ------------------------------------------------------------------------------------------------------------------
// HAProxy configuration
// ------------------------------------------------------------------------------------------------------------------

/** The templates of HAProxy's configuration (config/haproxy.cfg, config/spoe.conf), rendered by HaproxyProcess. */
const TEMPLATES = Object.fromEntries(
  ['haproxy.cfg', 'spoe.conf'].map((file) => [file, readFileSync(join(__dirname, 'config', file), 'utf8')]),
);

/** The configuration switches of the stack. */
interface HaproxyConfigOptions {
  /**
   * The agents backend mode (default: by version, `spop` on 3.1+, `tcp` before). `tcp` also writes the 2.x-only
   * spoe-agent lines (timeout hello/idle, option async).
   */
  readonly agentsMode?: 'tcp' | 'spop';
  /** `option pipelining` (default) or `no option pipelining`. */
  readonly pipelining?: boolean;
  /** 2.x only: `option async` (true) or `no option async` (false); not written when undefined. */
  readonly async?: boolean;
  /** `option spop-check` + `check inter 200ms rise 1 fall 1` on the agent server. */
  readonly healthCheck?: boolean;
  /** `expose-fd listeners` on the stats socket (for `-x` seamless reloads). */
  readonly exposeFd?: boolean;
  /** spoe-agent `timeout processing` (default 2s). */
  readonly timeoutProcessing?: string;
  /** Global `nbthread`; HAProxy's default when undefined. */
  readonly nbthread?: number;
  /**
   * The agent behind TLS (`server a1 … ssl verify required ca-file …`), or mutual TLS (HAProxy also presents a client
   * certificate, `crt …`, which the agent requires). Certificates from test/support/certificates.ts.
   */
  readonly tls?: 'tls' | 'mtls';
}

/** Where the stack's parts are, for the configuration. */
interface StackAddresses {
  /** HAProxy major.minor: 3.1+ gets a `mode spop` agents backend, older a `mode tcp` one. */
  readonly version: string;
  /** Directory the files are written to (spoe.conf is referenced by absolute path). */
  readonly dir: string;
  readonly agent: AgentEndpoint;
  readonly backend: { readonly host: string; readonly port: number };
  /** Frontend port on 127.0.0.1. */
  readonly port: number;
  /** Also bind [::1]:port6. */
  readonly port6?: number;
  /** Also bind `[::ffff:127.0.0.1]:portMapped` (an IPv6 socket reached over IPv4: sources are IPv4-mapped). */
  readonly portMapped?: number;
  readonly statsSocket: string;
  /** The certificates, when `tls` is set. */
  readonly pki?: TestPki;
}

/** The values of the templates' placeholders. */
function haproxyVars(o: StackAddresses & HaproxyConfigOptions): TemplateVars {
  const spop = (o.agentsMode ?? (isSpopMux(o.version) ? 'spop' : 'tcp')) === 'spop';
  return {
    STATS_SOCKET: o.statsSocket,
    STATS_SOCKET_EXPOSE_FD: o.exposeFd ? ' expose-fd listeners' : '',
    GLOBAL_TUNING: o.nbthread ? [`nbthread ${o.nbthread}`] : [],
    PORT: o.port,
    EXTRA_BINDS: [
      ...(o.port6 ? [`bind [::1]:${o.port6}`] : []),
      ...(o.portMapped ? [`bind [::ffff:127.0.0.1]:${o.portMapped} v4v6`] : []),
    ],
    SPOE_CONF: join(o.dir, 'spoe.conf'),
    BACKEND_ADDR: `${o.backend.host}:${o.backend.port}`,
    AGENTS_MODE: spop ? 'spop' : 'tcp',
    AGENT_CHECK: o.healthCheck ? ['option spop-check'] : [],
    AGENT_ADDR: 'path' in o.agent ? `unix@${o.agent.path}` : `${o.agent.host}:${o.agent.port}`,
    AGENT_SERVER_CHECK: o.healthCheck ? ' check inter 200ms rise 1 fall 1' : '',
    AGENT_SERVER_TLS:
      o.tls && o.pki
        ? ` ssl verify required ca-file ${o.pki.caFile}${o.tls === 'mtls' ? ` crt ${o.pki.client.pemFile}` : ''}`
        : '',
    TIMEOUT_PROCESSING: o.timeoutProcessing ?? '2s',
    // 2.x only: the SPOE applets' own timeouts, and option async.
    APPLET_OPTIONS: spop
      ? []
      : [
          'timeout hello 2s',
          'timeout idle 30s',
          ...(o.async !== undefined ? [`${o.async ? '' : 'no '}option async`] : []),
        ],
    PIPELINING: `${o.pipelining === false ? 'no ' : ''}option pipelining`,
  };
}

// ------------------------------------------------------------------------------------------------------------------
// The whole stack: agent + HTTP backend + HAProxy
// ------------------------------------------------------------------------------------------------------------------

/** Options of {@link startStack}: the configuration switches, plus how to run things. */
export interface StackOptions extends HaproxyConfigOptions {
  /** The agent on a Unix socket (`server a1 unix@…`) instead of TCP. */
  readonly unixAgent?: boolean;
  /** Also bind [::1] (when the host has IPv6 loopback) and an IPv4-mapped IPv6 socket. Default true. */
  readonly extraBinds?: boolean;
  /** HAProxy in master-worker mode (-W); for reload tests. */
  readonly masterWorker?: boolean;
  /** The agent's own `async` option (SpoeServer), independent of HAProxy's `option async`. */
  readonly agentAsync?: boolean;
}

/** A running agent, HTTP backend and HAProxy wired together; {@link Stack.close} stops all three. */
export interface Stack {
  readonly agent: RunningAgent;
  readonly backend: HttpBackend;
  readonly haproxy: HaproxyProcess;
  readonly statsSocket: string;
  /** The certificates of a TLS stack. */
  readonly pki: TestPki | undefined;
  /** Frontend ports: 127.0.0.1, [::1] (if bound), [::ffff:127.0.0.1] (if bound). */
  readonly port: number;
  readonly port6: number | undefined;
  readonly portMapped: number | undefined;
  /** GET (or POST with a body) through HAProxy on 127.0.0.1; adds X-Request-Id: rid. */
  request(
    path: string,
    rid: string,
    extra?: { headers?: Record<string, string>; body?: string; host?: string; port?: number },
  ): Promise<HttpResponse>;
  /** Stops the agent (app.close()). */
  stopAgent(): Promise<void>;
  /** Starts a new agent on the same endpoint, with the same recorder. */
  startAgent(): Promise<void>;
  close(): Promise<void>;
}

// What an app's OpenTelemetry SDK registers: the spans continue the traceparent argument of check-client-ip.
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

let ridCounter = 0;

/** A unique X-Request-Id value. */
export function newRid(prefix = 'r'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++ridCounter}`;
}

/**
 * Starts the agent (TCP on 127.0.0.1, or a Unix socket), the HTTP backend and HAProxy configured by the templates, on
 * free ports and in a new temporary directory. Whatever started is stopped again if a later step fails.
 */
export async function startStack(binary: HaproxyBinary, options: StackOptions = {}): Promise<Stack> {
  const dir = makeTempDir();
  const recorder = new AgentRecorder();
  const agentListen = options.unixAgent ? { path: join(dir, 'agent.sock') } : { port: 0 };
  const pki = options.tls ? makeTestPki(dir) : undefined;
  const agentTls: SpoeTlsOptions | undefined = pki && {
    cert: pki.server.cert,
    key: pki.server.key,
    ...(options.tls === 'mtls' && { ca: pki.ca, requestCert: true }),
  };
  let agent: RunningAgent | undefined;
  let backend: HttpBackend | undefined;
  let haproxy: HaproxyProcess | undefined;
  let agentRunning = false;
  const stopAgent = async (): Promise<void> => {
    if (agent && agentRunning) {
      agentRunning = false;
      await agent.close();
    }
  };
  const startAgentAgain = async (): Promise<void> => {
    if (agentRunning) return;
    const endpoint = agent?.endpoint;
    agent = await startHaproxyAgent(
      endpoint && 'port' in endpoint ? { port: endpoint.port } : agentListen,
      recorder,
      options.agentAsync,
      agentTls,
    );
    agentRunning = true;
  };
  const close = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const step of [() => haproxy?.stop(), () => stopAgent(), () => backend?.close()]) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    removeTempDir(dir);
    if (errors.length > 0) throw errors[0];
  };
  try {
    agent = await startHaproxyAgent(agentListen, recorder, options.agentAsync, agentTls);
    agentRunning = true;
    backend = await startHttpBackend();
    const extraBinds = options.extraBinds ?? true;
    const statsSocket = join(dir, 'admin.sock');
    let port = 0;
    let port6: number | undefined;
    let portMapped: number | undefined;
    // Ports are free when picked, but another process may take one before HAProxy binds it: then pick again.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      port6 = extraBinds && hasIpv6Loopback() ? await freePort() : undefined;
      portMapped = extraBinds ? await freePort() : undefined;
      const vars = haproxyVars({
        version: binary.version,
        dir,
        agent: agent.endpoint,
        backend,
        port,
        port6,
        portMapped,
        statsSocket,
        pki,
        ...options,
      });
      try {
        // Readiness through the stats socket only (HAProxy binds every listener before it serves it): no probe
        // connection to the frontend, so HAProxy's counters count the tests' requests only.
        haproxy = await HaproxyProcess.start({
          binary,
          dir,
          files: TEMPLATES,
          vars,
          statsSocket,
          masterWorker: options.masterWorker,
        });
        break;
      } catch (error) {
        if (attempt >= 3 || !/cannot bind|Address already in use/i.test((error as Error).message)) throw error;
      }
    }
    const h = haproxy;
    return {
      get agent() {
        return agent as RunningAgent;
      },
      backend,
      haproxy: h,
      statsSocket,
      pki,
      port,
      port6,
      portMapped,
      request: (path, rid, extra = {}) =>
        httpRequest({
          host: extra.host ?? '127.0.0.1',
          port: extra.port ?? port,
          path,
          headers: { 'x-request-id': rid, ...(extra.headers ?? {}) },
          body: extra.body,
        }),
      stopAgent,
      startAgent: startAgentAgain,
      close,
    };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

/** Waits until the last check of agents/a1 is a passed layer-7 check (not merely the initial UP state). */
export async function waitForL7Ok(stack: Stack, timeoutMs = 5000): Promise<void> {
  await waitFor(
    'a passed spop-check (L7OK)',
    async () => {
      const row = (await showStat(stack.statsSocket)).find((r) => r.pxname === 'agents' && r.svname === 'a1');
      return row?.status === 'UP' && row.check_status === 'L7OK';
    },
    timeoutMs,
    50,
  );
}

/**
 * What HAProxy prints of the variables `echo` set for a request to /echo with `body` (see config/haproxy.cfg), and
 * the types `echo-check` saw when HAProxy sent them back: every type there and back.
 */
export function expectEchoed(response: HttpResponse, body: string): void {
  expect(response.headers).toMatchObject({
    'x-echo-s': 'hello',
    'x-echo-neg': '-5',
    'x-echo-big': '5000000000',
    'x-echo-b': '1',
    'x-echo-bin': '48454C4C4F',
    'x-echo-v4': '192.0.2.7',
    'x-echo-v6': '::1',
    'x-echo-body': Buffer.from(body).toString('hex').toUpperCase(),
  });
  expect(response.headers['x-echo-h']).toBeUndefined();
  expect(response.headers['x-types']).toBe(
    's=String,neg=Int64,big=Int64,b=Boolean,bin=Binary,v4=Ipv4,v6=Ipv6,body=Binary,h=Null',
  );
}

/**
 * Resolves once HAProxy holds no stream of the frontend (`show sess` lists none with fe=fe): every request sent before
 * has ended in HAProxy, which counts a stream's SPOE errors when it ends.
 */
export async function streamsEnded(stack: Stack): Promise<void> {
  await waitFor(
    'HAProxy to end the previous streams',
    async () => !/ fe=fe /.test(await haproxyCli(stack.statsSocket, 'show sess')),
    5000,
    10,
  );
}
