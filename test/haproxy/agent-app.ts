/**
 * The SPOE agent used by the HAProxy e2e suites, built only with the public API of nestjs-spoe ({@link startAgent}),
 * the HAProxy configuration (haproxy.cfg + spoe.conf) that talks to it ({@link buildHaproxyFiles}), and the whole
 * agent + HTTP backend + HAProxy stack on free ports ({@link startStack}).
 *
 * Messages (see {@link buildHaproxyFiles} for the matching `spoe-message` sections):
 * - `check-client-ip` (arg `ip`, on-frontend-http-request, except for /nospoe): sets `sess.ip_score` (INT32) to 100 for 10.0.0.0/8,
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
 * Every message is recorded (name, `rid` argument, STREAM-ID, FRAME-ID, connection, negotiated capabilities, typed
 * arguments) in an {@link AgentRecorder}, which outlives agent restarts.
 */
import { Controller, DynamicModule, Inject, INestMicroservice, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SetVar, SpoeContext, SpoeDataType, SpoeDisconnectEvent, SpoeIp, SpoeServer, SpoeValue, TypedData, VarScope } from 'nestjs-spoe';
import { freePort, HaproxyBinary, HaproxyProcess, hasIpv6Loopback, httpRequest, HttpResponse, isSpopMux, makeTempDir, removeTempDir } from '../support/haproxy';
import { HttpBackend, startHttpBackend } from '../support/http-backend';
import { haproxyCli, waitFor } from '../support/haproxy';

// ------------------------------------------------------------------------------------------------------------------
// Recording
// ------------------------------------------------------------------------------------------------------------------

/** One argument as the agent received it. */
export interface RecordedArgument {
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
  readonly args: readonly RecordedArgument[];
  readonly at: number;
}

/** Collects what the agent received; shared across restarts of the agent. */
export class AgentRecorder {
  readonly records: MessageRecord[] = [];
  /** Connections that completed their HELLO (`connection` events of the transport; health checks excluded). */
  connections = 0;
  /** Every `disconnect` event of the transport: how each connection ended. */
  readonly disconnects: SpoeDisconnectEvent[] = [];

  /**
   * Disconnections that reveal a protocol problem on either side: an AGENT-DISCONNECT with a non-zero status, or a
   * HAPROXY-DISCONNECT with one.
   */
  abnormalDisconnects(): SpoeDisconnectEvent[] {
    return this.disconnects.filter((d) => (d.status !== undefined && d.status !== 0) || /HAPROXY-DISCONNECT status [1-9]/.test(d.reason));
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
    const args = ctx.getArguments().map((a) => ({ name: a.name, type: SpoeDataType[a.type], value: Buffer.isBuffer(a.value) ? Buffer.from(a.value) : a.value }));
    const rid = ctx.getArguments().find((a) => a.name === 'rid')?.value;
    const record: MessageRecord = {
      message,
      rid: typeof rid === 'string' ? rid : undefined,
      streamId: String(ctx.getStreamId()),
      frameId: String(ctx.getFrameId()),
      connection: ctx.getRemoteAddress(),
      capabilities: ctx.getSettings().capabilities,
      args,
      at: Date.now(),
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
export function scoreOf(ip: SpoeIp): number {
  const v4 = ip.unmapped();
  if (v4.family === 4) return v4.bytes[0] === 10 ? 100 : 5;
  return ip.bytes[0] === 0xfd ? 100 : 5;
}

/** "ipv4", "ipv6" or "ipv4-mapped" (an IPV6 value of the form ::ffff:a.b.c.d). */
export function familyOf(ip: SpoeIp): 'ipv4' | 'ipv6' | 'ipv4-mapped' {
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
    return [SetVar.sess('ip_score', TypedData.int32(scoreOf(ip))), SetVar.txn('ip_family', familyOf(ip)), SetVar.txn('ip_seen', ip.toString())];
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
    return { module: AgentModule, controllers: [AgentController], providers: [{ provide: RECORDER, useValue: recorder }] };
  }
}

/** Where the agent listens: a TCP port on 127.0.0.1 (0 picks a free one) or a Unix socket path. */
export type AgentEndpoint = { readonly host: string; readonly port: number } | { readonly path: string };

/** A running agent. */
export interface RunningAgent {
  readonly app: INestMicroservice;
  readonly server: SpoeServer;
  readonly recorder: AgentRecorder;
  /** The endpoint it actually listens on (the chosen port when 0 was asked). */
  readonly endpoint: AgentEndpoint;
  /** app.close(): drains in-flight NOTIFY, sends AGENT-DISCONNECT and closes. */
  close(): Promise<void>;
}

/** Options of {@link startAgent}. */
export interface StartAgentOptions {
  /** Default: 127.0.0.1, a free port. */
  readonly listen?: { readonly port: number } | { readonly path: string };
  /** Reuse a recorder (e.g. across a stop/start of the agent). */
  readonly recorder?: AgentRecorder;
  /** Nest logs (default off; set SPOE_E2E_LOG=1 to see them). */
  readonly log?: boolean;
  /** SpoeServer `async` option: whether the agent announces the async capability (default: the library's, false). */
  readonly async?: boolean;
}

/** The library's error variable, as HAProxy reads it: `var(txn.iprep.agent_error)`. */
export const AGENT_ERROR_VARIABLE = { scope: VarScope.Transaction, name: 'agent_error' } as const;

/** Builds and starts the agent: `NestFactory.createMicroservice(AgentModule, { strategy: new SpoeServer(…) })`. */
export async function startAgent(options: StartAgentOptions = {}): Promise<RunningAgent> {
  const recorder = options.recorder ?? new AgentRecorder();
  const listen = options.listen ?? { port: 0 };
  const server = new SpoeServer({
    ...('path' in listen ? { path: listen.path } : { host: '127.0.0.1', port: listen.port }),
    errorVariable: AGENT_ERROR_VARIABLE,
    ...(options.async !== undefined ? { async: options.async } : {}),
    // Tests stop and restart agents: keep shutdowns short.
    drainTimeoutMs: 1000,
    disconnectLingerMs: 200,
  });
  server.on('connection', () => recorder.connections++);
  server.on('disconnect', (event) => recorder.disconnects.push(event));
  const log = options.log ?? process.env.SPOE_E2E_LOG === '1';
  const app = await NestFactory.createMicroservice(AgentModule.register(recorder), { strategy: server, logger: log ? ['error', 'warn', 'log'] : false });
  await app.listen();
  const address = server.address;
  const endpoint: AgentEndpoint = typeof address === 'string' ? { path: address } : { host: '127.0.0.1', port: (address as AddressInfo).port };
  return { app, server, recorder, endpoint, close: () => app.close() };
}

// ------------------------------------------------------------------------------------------------------------------
// HAProxy configuration
// ------------------------------------------------------------------------------------------------------------------

/** What {@link buildHaproxyFiles} needs. */
export interface HaproxyConfigOptions {
  /** HAProxy major.minor: 3.1+ gets a `mode spop` agents backend, older a `mode tcp` one. */
  readonly version: string;
  /**
   * Force the agents backend mode (default: by version). `tcp` also writes the 2.x-only spoe-agent lines (timeout
   * hello/idle, option async).
   */
  readonly agentsMode?: 'tcp' | 'spop';
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
}

/** Variables of scope txn the configuration reads (so HAProxy registers them and accepts them from the agent). */
const ECHO_VARS = ['s', 'neg', 'big', 'b', 'bin', 'v4', 'v6', 'body', 'h'] as const;

/**
 * haproxy.cfg and spoe.conf for the agent. The frontend:
 * - scores every request (check-client-ip + audit on on-frontend-http-request, one NOTIFY);
 * - takes the source from X-Forwarded-For when present (`tcp-request content set-src`, evaluated before the SPOE
 *   event, unlike `http-request set-src`);
 * - denies with 403 when `sess.iprep.ip_score >= 100`;
 * - /echo: echo + echo-check; /group: `send-spoe-group agent grp`; /boom, /slow: the failing handlers; /nospoe: no
 *   SPOE message at all;
 * - forwards X-IP-Score to the backend, and adds to every response (`http-after-response`, so 403s too) the agent's
 *   variables as X-* headers, plus type-sensitive ACL checks of the echoed values (X-Check-*: ok).
 */
export function buildHaproxyFiles(o: HaproxyConfigOptions): { 'haproxy.cfg': string; 'spoe.conf': string } {
  const spop = (o.agentsMode ?? (isSpopMux(o.version) ? 'spop' : 'tcp')) === 'spop';
  const agentAddress = 'path' in o.agent ? `unix@${o.agent.path}` : `${o.agent.host}:${o.agent.port}`;
  const spoeConf = join(o.dir, 'spoe.conf');
  const found = (v: string) => `if { var(${v}) -m found }`;
  const afterResponse = [
    `X-IP-Score %[var(sess.iprep.ip_score)] ${found('sess.iprep.ip_score')}`,
    `X-IP-Family %[var(txn.iprep.ip_family)] ${found('txn.iprep.ip_family')}`,
    `X-IP-Seen %[var(txn.iprep.ip_seen)] ${found('txn.iprep.ip_seen')}`,
    `X-SPOE-Error %[var(txn.iprep.error)] ${found('txn.iprep.error')}`,
    `X-SPOE-Process-Time %[var(txn.iprep.pt)] ${found('txn.iprep.pt')}`,
    `X-Agent-Error %[var(txn.iprep.agent_error)] ${found('txn.iprep.agent_error')}`,
    `X-Group %[var(txn.iprep.group_seen)] ${found('txn.iprep.group_seen')}`,
    `X-Types %[var(txn.iprep.types)] ${found('txn.iprep.types')}`,
    `X-Echo-S %[var(txn.iprep.s)] ${found('txn.iprep.s')}`,
    `X-Echo-Neg %[var(txn.iprep.neg)] ${found('txn.iprep.neg')}`,
    `X-Echo-Big %[var(txn.iprep.big)] ${found('txn.iprep.big')}`,
    `X-Echo-B %[var(txn.iprep.b)] ${found('txn.iprep.b')}`,
    `X-Echo-Bin %[var(txn.iprep.bin),hex] ${found('txn.iprep.bin')}`,
    `X-Echo-V4 %[var(txn.iprep.v4)] ${found('txn.iprep.v4')}`,
    `X-Echo-V6 %[var(txn.iprep.v6)] ${found('txn.iprep.v6')}`,
    `X-Echo-Body %[var(txn.iprep.body),hex] if { var(txn.iprep.body),length lt 1024 }`,
    `X-Echo-Body-Length %[var(txn.iprep.body),length] ${found('txn.iprep.body')}`,
    `X-Echo-H %[var(txn.iprep.h)] ${found('txn.iprep.h')}`,
    // Type-sensitive checks: integer comparisons, a boolean match, IP/network matches.
    `X-Check-Neg ok if { var(txn.iprep.neg) -m int eq -5 }`,
    `X-Check-Big ok if { var(txn.iprep.big) -m int eq 5000000000 }`,
    `X-Check-B ok if { var(txn.iprep.b) -m bool }`,
    `X-Check-V4 ok if { var(txn.iprep.v4) -m ip 192.0.2.0/24 }`,
    `X-Check-V6 ok if { var(txn.iprep.v6) -m ip ::1 }`,
    `X-Check-Score ok if { var(sess.iprep.ip_score) -m int eq 5 } || { var(sess.iprep.ip_score) -m int eq 100 }`,
  ].map((h) => `    http-after-response set-header ${h}`);

  const cfg = [
    'global',
    '    log stdout format raw local0 info',
    `    stats socket ${o.statsSocket} level admin${o.exposeFd ? ' expose-fd listeners' : ''}`,
    ...(o.nbthread ? [`    nbthread ${o.nbthread}`] : []),
    '',
    'defaults',
    '    mode http',
    '    timeout connect 2s',
    '    timeout client 30s',
    '    timeout server 30s',
    '    # soft-stop: answer the next request on an idle keep-alive connection with "Connection: close" instead of',
    '    # closing it under a client that may be sending (no request lost during reloads)',
    '    option idle-close-on-response',
    '',
    'frontend fe',
    `    bind 127.0.0.1:${o.port}`,
    ...(o.port6 ? [`    bind [::1]:${o.port6}`] : []),
    ...(o.portMapped ? [`    bind [::ffff:127.0.0.1]:${o.portMapped} v4v6`] : []),
    '    option http-buffer-request',
    `    filter spoe engine agent config ${spoeConf}`,
    '    tcp-request content set-src req.hdr(x-forwarded-for) if { req.hdr(x-forwarded-for) -m found }',
    '    http-request deny deny_status 403 if { var(sess.iprep.ip_score) -m int ge 100 }',
    '    http-request send-spoe-group agent grp if { path_beg /group }',
    '    http-request set-header X-IP-Score %[var(sess.iprep.ip_score)] if { var(sess.iprep.ip_score) -m found }',
    ...afterResponse,
    '    default_backend be',
    '',
    'backend be',
    `    server s1 ${o.backend.host}:${o.backend.port}`,
    '',
    'backend agents',
    `    mode ${spop ? 'spop' : 'tcp'}`,
    '    balance roundrobin',
    '    timeout connect 2s',
    '    timeout server 1m',
    ...(o.healthCheck ? ['    option spop-check'] : []),
    `    server a1 ${agentAddress}${o.healthCheck ? ' check inter 200ms rise 1 fall 1' : ''}`,
    '',
  ].join('\n');

  const echoArgs = ['rid=req.hdr(x-request-id)', 's=str(hello)', 'neg=int(-5)', 'big=int(5000000000)', 'b=bool(1)', 'bin=bin(48454c4c4f)', 'v4=ipv4(192.0.2.7)', 'v6=ipv6(::1)', 'body=req.body', 'h=req.hdr(x-absent)'];
  const echoCheckArgs = ['rid=req.hdr(x-request-id)', ...ECHO_VARS.map((v) => `${v}=var(txn.iprep.${v})`)];
  const spoe = [
    '[agent]',
    'spoe-agent agent',
    '    messages check-client-ip audit echo echo-check boom slow',
    '    groups grp',
    '    option var-prefix iprep',
    '    option set-on-error error',
    '    option set-process-time pt',
    `    timeout processing ${o.timeoutProcessing ?? '2s'}`,
    ...(spop ? [] : ['    timeout hello 2s', '    timeout idle 30s']),
    `    ${o.pipelining === false ? 'no ' : ''}option pipelining`,
    ...(!spop && o.async !== undefined ? [`    ${o.async ? '' : 'no '}option async`] : []),
    '    use-backend agents',
    '    log global',
    '',
    'spoe-message check-client-ip',
    '    args ip=src rid=req.hdr(x-request-id)',
    '    event on-frontend-http-request unless { path_beg /nospoe }',
    '',
    'spoe-message audit',
    '    args rid=req.hdr(x-request-id) path=path',
    '    event on-frontend-http-request unless { path_beg /nospoe }',
    '',
    'spoe-message echo',
    `    args ${echoArgs.join(' ')}`,
    '    event on-frontend-http-request if { path_beg /echo }',
    '',
    'spoe-message echo-check',
    `    args ${echoCheckArgs.join(' ')}`,
    '    event on-backend-http-request if { path_beg /echo }',
    '',
    'spoe-message boom',
    '    args rid=req.hdr(x-request-id)',
    '    event on-frontend-http-request if { path_beg /boom }',
    '',
    'spoe-message slow',
    '    args rid=req.hdr(x-request-id)',
    '    event on-frontend-http-request if { path_beg /slow }',
    '',
    'spoe-group grp',
    '    messages group-msg',
    '',
    'spoe-message group-msg',
    '    args rid=req.hdr(x-request-id) path=path',
    '',
  ].join('\n');
  return { 'haproxy.cfg': cfg, 'spoe.conf': spoe };
}

// ------------------------------------------------------------------------------------------------------------------
// The whole stack: agent + HTTP backend + HAProxy
// ------------------------------------------------------------------------------------------------------------------

/** Options of {@link startStack}: the configuration switches, plus how to run things. */
export interface StackOptions extends Pick<HaproxyConfigOptions, 'agentsMode' | 'pipelining' | 'async' | 'healthCheck' | 'exposeFd' | 'timeoutProcessing' | 'nbthread'> {
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
  readonly binary: HaproxyBinary;
  readonly dir: string;
  readonly agent: RunningAgent;
  readonly backend: HttpBackend;
  readonly haproxy: HaproxyProcess;
  readonly statsSocket: string;
  /** Frontend ports: 127.0.0.1, [::1] (if bound), [::ffff:127.0.0.1] (if bound). */
  readonly port: number;
  readonly port6: number | undefined;
  readonly portMapped: number | undefined;
  /** GET (or POST with a body) through HAProxy on 127.0.0.1; adds X-Request-Id: rid. */
  request(path: string, rid: string, extra?: { headers?: Record<string, string>; body?: string; host?: string; port?: number }): Promise<HttpResponse>;
  /** Stops the agent (app.close()) and starts a new one on the same endpoint, with the same recorder. */
  restartAgent(): Promise<void>;
  stopAgent(): Promise<void>;
  startAgent(): Promise<void>;
  close(): Promise<void>;
}

let ridCounter = 0;

/** A unique X-Request-Id value. */
export function newRid(prefix = 'r'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++ridCounter}`;
}

/**
 * Starts the agent (TCP on 127.0.0.1, or a Unix socket), the HTTP backend and HAProxy with {@link buildHaproxyFiles},
 * on free ports and in a new temporary directory. Whatever started is stopped again if a later step fails.
 */
export async function startStack(binary: HaproxyBinary, options: StackOptions = {}): Promise<Stack> {
  const dir = makeTempDir();
  const recorder = new AgentRecorder();
  const agentListen = options.unixAgent ? { path: join(dir, 'agent.sock') } : { port: 0 };
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
    agent = await startAgent({ listen: endpoint && 'port' in endpoint ? { port: endpoint.port } : agentListen, recorder, async: options.agentAsync });
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
    agent = await startAgent({ listen: agentListen, recorder, async: options.agentAsync });
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
      port6 = extraBinds && (await hasIpv6Loopback()) ? await freePort() : undefined;
      portMapped = extraBinds ? await freePort() : undefined;
      const files = buildHaproxyFiles({ version: binary.version, dir, agent: agent.endpoint, backend, port, port6, portMapped, statsSocket, ...options });
      try {
        // Readiness through the stats socket only (HAProxy binds every listener before it serves it): no probe
        // connection to the frontend, so HAProxy's counters count the tests' requests only.
        haproxy = await HaproxyProcess.start({ binary, dir, files, statsSocket, masterWorker: options.masterWorker });
        break;
      } catch (error) {
        if (attempt >= 3 || !/cannot bind|Address already in use/i.test((error as Error).message)) throw error;
      }
    }
    const h = haproxy;
    return {
      binary,
      dir,
      get agent() {
        return agent as RunningAgent;
      },
      backend,
      haproxy: h,
      statsSocket,
      port,
      port6,
      portMapped,
      request: (path, rid, extra = {}) =>
        httpRequest({ host: extra.host ?? '127.0.0.1', port: extra.port ?? port, path, headers: { 'x-request-id': rid, ...(extra.headers ?? {}) }, body: extra.body }),
      restartAgent: async () => {
        await stopAgent();
        await startAgentAgain();
      },
      stopAgent,
      startAgent: startAgentAgain,
      close,
    };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

/**
 * Resolves once HAProxy holds no stream of the frontend (`show sess` lists none with fe=fe): every request sent before
 * has ended in HAProxy, which counts a stream's SPOE errors when it ends.
 */
export async function streamsEnded(stack: Stack): Promise<void> {
  await waitFor('HAProxy to end the previous streams', async () => !/ fe=fe /.test(await haproxyCli(stack.statsSocket, 'show sess')), 5000, 10);
}
