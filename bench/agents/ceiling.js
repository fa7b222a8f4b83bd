'use strict';
/**
 * The ceiling agent of `npm run bench:frames`: what Node itself allows for an SPOE agent, with no framework, no
 * library and no project code. It speaks just enough SPOP 2.0 to answer HAProxy (HELLO, health-check HELLO, NOTIFY,
 * DISCONNECT) and answers each `check-client-ip` NOTIFY with set-var sess.ip_score INT32 (10 for IPv4, 20 for IPv6),
 * as the bench agents built on nestjs-spoe do. Their frames per second and CPU per frame are read against this one.
 *
 * Per socket, one 'data' handler scans the chunk in place for whole frames (a frame that straddles two chunks is
 * completed in a preallocated carry buffer), really parses each NOTIFY (message name, nb-args, every argument's name
 * and typed data) and writes the ACKs of the whole chunk with one socket.write. The hot path allocates only that
 * write's Buffer.
 *
 * With `--traced`, the NOTIFY that carry a sampled W3C `traceparent` argument (spop-load --traced-every) get a span of
 * the OpenTelemetry SDK, set up as nest-agents.ts' `observed` agents set it up (batch processor, dropping exporter,
 * AsyncLocalStorage context manager, W3C propagator), with the attributes nestjs-spoe's spans carry, the answer
 * computed in its context: what tracing costs an agent that adds nothing else, the floor of any Node agent's.
 *
 * Run: PORT=0 node bench/agents/ceiling.js [--traced]   → prints `READY <port>`.
 */
const net = require('node:net');

const TRACED = process.argv.includes('--traced');
/** The `traceparent` argument of the NOTIFY being decoded: where its value lies, -1 when it has none. */
let traceparentAt = -1;
let traceparentEnd = -1;
const tracing = TRACED ? setUpTracing() : undefined;

/** The OpenTelemetry SDK, loaded only with --traced: the plain ceiling agent loads nothing but Node. */
function setUpTracing() {
  const api = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { ExportResultCode, W3CTraceContextPropagator } = require('@opentelemetry/core');
  const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
  const dropping = { export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }), shutdown: async () => {} };
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(dropping)] }));
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const tracer = api.trace.getTracer('ceiling');
  const getter = {
    keys: () => ['traceparent'],
    get: (b, key) => (key === 'traceparent' ? b.toString('latin1', traceparentAt, traceparentEnd) : undefined),
  };
  /** `score`, computed in the span of the NOTIFY in b (its sampled traceparent continued). */
  return (b, score, streamId, frameId, peer) => {
    const parent = api.propagation.extract(api.context.active(), b, getter);
    const span = tracer.startSpan(
      'spoe check-client-ip',
      {
        kind: api.SpanKind.SERVER,
        attributes: {
          'spoe.message': 'check-client-ip',
          'spoe.stream_id': streamId,
          'spoe.frame_id': frameId,
          'network.peer.address': peer.address,
          'network.peer.port': peer.port,
        },
      },
      parent,
    );
    const answer = api.context.with(api.trace.setSpan(parent, span), () => score);
    span.setAttribute('spoe.outcome', 'ok');
    span.end();
    return answer;
  };
}

const MAX_FRAME_SIZE = 16380;
const [HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY, AGENT_HELLO, AGENT_DISCONNECT, ACK] = [1, 2, 3, 101, 102, 103];
const [T_INT32, T_UINT32, T_IPV4, T_IPV6, T_STRING] = [2, 3, 6, 7, 8];
const MESSAGE = Buffer.from('check-client-ip');
const SET_VAR_IP_SCORE = Buffer.from([1, 3, 1, 8, ...Buffer.from('ip_score'), T_INT32]); // + the score (one byte)

// The decoder's cursor and last integer, module-wide: handlers run one at a time, so nothing is allocated per field.
let at = 0;
let num = 0;

function varint(b) {
  let v = b[at++];
  if (v < 240) return v;
  let shift = 4;
  let byte;
  do {
    byte = b[at++];
    v += byte * 2 ** shift;
    shift += 7;
  } while (byte >= 128);
  return v;
}

/** Skips one TYPED-DATA, returns its type; integers (and string lengths) are left in `num`. */
function typedData(b) {
  const byte = b[at++];
  const type = byte & 15;
  num = type === 1 ? (byte >> 4) & 1 : 0;
  if (type >= T_INT32 && type <= 5) num = varint(b);
  else if (type === T_IPV4) at += 4;
  else if (type === T_IPV6) at += 16;
  else if (type === T_STRING || type === 9) {
    num = varint(b);
    at += num;
  }
  return type;
}

/** The score for a NOTIFY payload: from the `ip` argument of `check-client-ip`; 0 without one, -1 when malformed. */
function notifyScore(b, end) {
  let score = 0;
  while (at < end) {
    const nameLength = varint(b);
    let isCheck = nameLength === MESSAGE.length;
    for (let i = 0; isCheck && i < nameLength; i++) isCheck = b[at + i] === MESSAGE[i];
    at += nameLength;
    const nbArgs = b[at++];
    for (let i = 0; i < nbArgs; i++) {
      const argLength = varint(b);
      const isIp = argLength === 2 && b[at] === 0x69 && b[at + 1] === 0x70;
      const isTraceparent = TRACED && argLength === 11 && b.toString('latin1', at, at + 11) === 'traceparent';
      at += argLength;
      const type = typedData(b);
      if (isTraceparent && type === T_STRING) [traceparentAt, traceparentEnd] = [at - num, at];
      if (isCheck && isIp && (type === T_IPV4 || type === T_IPV6)) score = type === T_IPV4 ? 10 : 20;
    }
  }
  return at === end ? score : -1;
}

/** Encodes a rare frame (HELLO, DISCONNECT) whose payload is a KV-LIST of [key, type, string | integer]. */
function kvFrame(type, items) {
  const bytes = [type, 0, 0, 0, 1, 0, 0];
  const pushVarint = (v) => {
    if (v < 240) return bytes.push(v);
    bytes.push((v & 15) | 240);
    for (v = (v - 240) >>> 4; v >= 128; v = (v - 128) >>> 7) bytes.push((v & 127) | 128);
    bytes.push(v);
  };
  const pushString = (s) => (pushVarint(Buffer.byteLength(s)), bytes.push(...Buffer.from(s)));
  for (const [key, dataType, value] of items) {
    pushString(key);
    bytes.push(dataType);
    if (typeof value === 'string') pushString(value);
    else pushVarint(value);
  }
  const frame = Buffer.alloc(4 + bytes.length);
  frame.writeUInt32BE(bytes.length, 0);
  frame.set(bytes, 4);
  return frame;
}

const disconnectFrame = (status, message) =>
  kvFrame(AGENT_DISCONNECT, [
    ['status-code', T_UINT32, status],
    ['message', T_STRING, message],
  ]);

// The ACKs of one 'data' event; copied out for the write, so this buffer is reused by every event of every socket.
const out = Buffer.allocUnsafe(256 * 1024);
let outLength = 0;

function flush(socket) {
  if (outLength === 0) return;
  const chunk = Buffer.allocUnsafe(outLength);
  out.copy(chunk, 0, 0, outLength);
  socket.write(chunk);
  outLength = 0;
}

function onConnection(socket) {
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  const peer = { address: socket.remoteAddress, port: socket.remotePort };
  const carry = Buffer.allocUnsafe(4 + MAX_FRAME_SIZE);
  let carried = 0;
  let greeted = false;

  const close = (frame) => {
    flush(socket);
    socket.end(frame);
    socket.removeAllListeners('data');
    return false;
  };

  /** Handles the frame in b[start, end) (after its length); false when the connection is over. */
  const onFrame = (b, start, end) => {
    const type = b[start];
    at = start + 5;
    const ids = at;
    const streamId = varint(b);
    const frameId = varint(b);
    const idsEnd = at;
    if (type === NOTIFY && greeted) {
      if ((b[start + 4] & 1) === 0) return close(disconnectFrame(10, 'fragmentation not supported'));
      traceparentAt = -1;
      let score = notifyScore(b, end);
      // Sampled: trace-flags (its last two hex digits) with bit 0 set ('0'-'9' and 'a'-'f' alternate from even).
      if (tracing && traceparentAt >= 0 && (b[traceparentEnd - 1] & 1) === (b[traceparentEnd - 1] <= 0x39 ? 1 : 0)) {
        score = tracing(b, score, streamId, frameId, peer);
      }
      if (score < 0) return close(disconnectFrame(4, 'invalid NOTIFY'));
      if (outLength + 64 > out.length) flush(socket);
      const o = outLength;
      let p = o + 4;
      out[p++] = ACK;
      out.writeUInt32BE(1, p); // flags: FIN
      p += 4;
      for (let i = ids; i < idsEnd; i++) out[p++] = b[i]; // stream-id and frame-id, as received
      if (score > 0) {
        for (let i = 0; i < SET_VAR_IP_SCORE.length; i++) out[p++] = SET_VAR_IP_SCORE[i];
        out[p++] = score;
      }
      out.writeUInt32BE(p - o - 4, o);
      outLength = p;
      return true;
    }
    if (type === HAPROXY_HELLO && !greeted) {
      let versions = '';
      let maxFrameSize = 0;
      let healthcheck = false;
      while (at < end) {
        const keyLength = varint(b);
        const key = b.toString('latin1', at, (at += keyLength));
        const dataType = typedData(b);
        if (key === 'supported-versions' && dataType === T_STRING) versions = b.toString('latin1', at - num, at);
        else if (key === 'max-frame-size' && dataType === T_UINT32) maxFrameSize = num;
        else if (key === 'healthcheck') healthcheck = num === 1;
      }
      if (!/(^|,)\s*2\.\d+\s*(,|$)/.test(versions)) return close(disconnectFrame(8, 'unsupported version'));
      if (maxFrameSize < 256) return close(disconnectFrame(9, 'bad frame size'));
      const hello = kvFrame(AGENT_HELLO, [
        ['version', T_STRING, '2.0'],
        ['max-frame-size', T_UINT32, Math.min(MAX_FRAME_SIZE, maxFrameSize)],
        ['capabilities', T_STRING, 'pipelining'],
      ]);
      if (healthcheck) return close(hello);
      greeted = true;
      socket.write(hello);
      return true;
    }
    if (type === HAPROXY_DISCONNECT) return close(disconnectFrame(0, 'normal'));
    return close(disconnectFrame(4, `unexpected frame type ${type}`));
  };

  socket.on('data', (chunk) => {
    let p = 0;
    if (carried > 0) {
      // Complete the frame left by the previous chunk: its length first, then its bytes.
      if (carried < 4) {
        const take = Math.min(4 - carried, chunk.length);
        chunk.copy(carry, carried, 0, take);
        carried += take;
        p = take;
        if (carried < 4) return;
      }
      const total = 4 + carry.readUInt32BE(0);
      if (total > 4 + MAX_FRAME_SIZE) return close(disconnectFrame(3, 'frame is too big'));
      const take = Math.min(total - carried, chunk.length - p);
      chunk.copy(carry, carried, p, p + take);
      carried += take;
      p += take;
      if (carried < total) return;
      carried = 0;
      if (!onFrame(carry, 4, total)) return;
    }
    while (chunk.length - p >= 4) {
      const length = chunk.readUInt32BE(p);
      if (length > MAX_FRAME_SIZE) return close(disconnectFrame(3, 'frame is too big'));
      if (chunk.length - p - 4 < length) break;
      if (!onFrame(chunk, p + 4, p + 4 + length)) return;
      p += 4 + length;
    }
    carried = chunk.copy(carry, 0, p);
    flush(socket);
  });
}

const server = net.createServer(onConnection);
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`READY ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
