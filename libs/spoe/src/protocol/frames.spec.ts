import fc from 'fast-check';
import { ByteWriter } from './byte-writer';
import {
  ActionType,
  decodeAck,
  decodeAgentHello,
  decodeDisconnect,
  decodeHaproxyHello,
  decodeNotify,
  encodeAck,
  encodeAgentDisconnect,
  encodeAgentHello,
  encodeFrame,
  encodeHaproxyDisconnect,
  encodeHaproxyHello,
  encodeNotify,
  Frame,
  FrameFlag,
  FrameReader,
  FrameType,
  FrameWriter,
  HaproxyHello,
  MIN_FRAME_SIZE,
  negotiateHello,
  SpoeAction,
  SpoeDataType,
  SpoeEncodeError,
  SpoeIp,
  SpopError,
  SpopHelloError,
  SpopInvalidFrameError,
  SpopStatus,
  supportsVersion,
  TypedData,
  UINT64_MAX,
  VarScope,
  writeAck,
  writeAgentDisconnect,
  writeAgentHello,
  writeFrame,
  writeNotify,
} from '.';
import { thrown } from '../../test/thrown';

/**
 * Bytes written as hex pairs and "quoted ASCII", with `//` comments: the frames below are laid out field by field as
 * SPOE.txt section 3 describes them, lengths counted by hand.
 */
function bytes(spec: string): Buffer {
  const out: number[] = [];
  for (const line of spec.split('\n')) {
    const code = line.replace(/\/\/.*$/, '');
    const rest = code.replace(/"[^"]*"|[0-9a-f]{2}/gi, (token) => {
      if (token.startsWith('"')) out.push(...Buffer.from(token.slice(1, -1), 'latin1'));
      else out.push(parseInt(token, 16));
      return '';
    });
    if (rest.trim() !== '') throw new Error(`bad byte spec: ${line}`);
  }
  return Buffer.from(out);
}

/** The one frame `wire` holds, read as the server reads it. */
function readFrame(wire: Buffer): Frame {
  const reader = new FrameReader(wire.length);
  reader.push(wire);
  const frame = reader.next();
  if (!frame) throw new Error('incomplete frame');
  expect(reader.bufferedBytes).toBe(0);
  return frame;
}

/** A frame around `payload`, its length prefix computed: for payloads built to be wrong. */
function frameOf(type: FrameType, payload: Buffer, flags = FrameFlag.Fin, streamId = 0, frameId = 0): Buffer {
  return encodeFrame(payload.length + 64, type, flags, streamId, frameId, (w, p: Buffer) => w.bytes(p), payload);
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const HAPROXY_HELLO = bytes(`
  00 00 00 5f                                   // length 95 = 7 + 88
  01                                            // HAPROXY-HELLO
  00 00 00 01                                   // FIN
  00 00                                         // stream-id 0, frame-id 0
  12 "supported-versions" 08 03 "2.0"           // 24 bytes
  0e "max-frame-size"     03 fc f0 06           // 19: UINT32 16380 = 0xfc | (14092 & 15), then 880 as 0xf0 06
  0c "capabilities"       08 10 "pipelining,async"   // 31
  09 "engine-id"          08 02 "e1"            // 14
`);

const HEALTHCHECK_HELLO = bytes(`
  00 00 00 5e                                   // length 94 = 7 + 87
  01 00 00 00 01 00 00
  12 "supported-versions" 08 03 "2.0"
  0e "max-frame-size"     03 fc f0 06
  0c "capabilities"       08 10 "pipelining,async"
  0b "healthcheck"        11                    // BOOL true
`);

const AGENT_HELLO = bytes(`
  00 00 00 46                                   // length 70 = 7 + 63
  65                                            // AGENT-HELLO (101)
  00 00 00 01 00 00
  07 "version"            08 03 "2.0"
  0e "max-frame-size"     03 fc f0 06
  0c "capabilities"       08 10 "pipelining,async"
`);

const NOTIFY = bytes(`
  00 00 00 4d                                   // length 77 = 8 + 69
  03                                            // NOTIFY
  00 00 00 01                                   // FIN
  fc 03                                         // stream-id 300: 0xf0 | (300 & 15), (300 - 240) >> 4
  01                                            // frame-id 1
  0f "check-client-ip" 02                       // message, 2 arguments
    02 "ip"   06 c0 a8 00 01                    // IPV4 192.168.0.1
    04 "port" 02 fb 0c                          // INT32 443
  0b "log-request" 03                           // message, 3 arguments
    00        08 03 "GET"                       // unnamed STRING
    06 "secure" 11                              // BOOL true
    04 "body" 09 02 de ad                       // BINARY
`);

const ACK = bytes(`
  00 00 00 16                                   // length 22 = 8 + 14
  67                                            // ACK (103)
  00 00 00 01                                   // FIN
  fc 03 01                                      // stream-id 300, frame-id 1
  01 03 01                                      // set-var, 3 arguments, scope sess
  08 "ip_score"                                 // name: length and bytes, no type byte
  02 2a                                         // INT32 42
`);

const AGENT_DISCONNECT = bytes(`
  00 00 00 2f                                   // length 47 = 7 + 40
  66                                            // AGENT-DISCONNECT (102)
  00 00 00 01 00 00
  0b "status-code" 03 03                        // UINT32 3
  07 "message"     08 10 "frame is too big"
`);

const hello: HaproxyHello = {
  supportedVersions: '2.0',
  maxFrameSize: 16380,
  capabilities: ['pipelining', 'async'],
  healthcheck: false,
  engineId: 'e1',
};

describe('frames (SPOE.txt 3.2)', () => {
  describe('HAPROXY-HELLO', () => {
    it('encodes byte for byte', () => {
      expect(encodeHaproxyHello(hello).toString('hex')).toBe(HAPROXY_HELLO.toString('hex'));
    });

    it('encodes a health check HELLO with healthcheck and without engine-id', () => {
      const healthcheck: HaproxyHello = {
        supportedVersions: '2.0',
        maxFrameSize: 16380,
        capabilities: ['pipelining', 'async'],
        healthcheck: true,
      };
      expect(encodeHaproxyHello(healthcheck).toString('hex')).toBe(HEALTHCHECK_HELLO.toString('hex'));
    });

    it('decodes every item', () => {
      expect(decodeHaproxyHello(readFrame(HAPROXY_HELLO))).toEqual(hello);
    });

    it('decodes a health check', () => {
      const decoded = decodeHaproxyHello(readFrame(HEALTHCHECK_HELLO));
      expect(decoded.healthcheck).toBe(true);
      expect(decoded).not.toHaveProperty('engineId');
    });

    it('reads the frame header: type, FIN, ids 0', () => {
      const frame = readFrame(HAPROXY_HELLO);
      expect(frame).toMatchObject({ type: FrameType.HaproxyHello, flags: FrameFlag.Fin, streamId: 0, frameId: 0 });
    });

    it('accepts items in any order', () => {
      const payload = bytes(`
        09 "engine-id" 08 02 "e1"
        0c "capabilities" 08 10 "pipelining,async"
        0e "max-frame-size" 03 fc f0 06
        12 "supported-versions" 08 03 "2.0"
      `);
      expect(decodeHaproxyHello(readFrame(frameOf(FrameType.HaproxyHello, payload)))).toEqual(hello);
    });

    it('ignores spaces and empty entries in capabilities', () => {
      const payload = bytes(`
        12 "supported-versions" 08 03 "2.0"
        0e "max-frame-size" 03 fc f0 06
        0c "capabilities" 08 14 " pipelining , ,async"
      `);
      expect(decodeHaproxyHello(readFrame(frameOf(FrameType.HaproxyHello, payload))).capabilities).toEqual([
        'pipelining',
        'async',
      ]);
    });

    it('keeps unknown items out of the way', () => {
      const payload = bytes(`
        12 "supported-versions" 08 03 "2.0"
        0e "max-frame-size" 03 fc f0 06
        0c "capabilities" 08 00
        05 "extra" 02 07
      `);
      expect(decodeHaproxyHello(readFrame(frameOf(FrameType.HaproxyHello, payload)))).toEqual({
        supportedVersions: '2.0',
        maxFrameSize: 16380,
        capabilities: [],
        healthcheck: false,
      });
    });

    it.each<[string, string, SpopStatus]>([
      ['supported-versions', '0e "max-frame-size" 03 fc f0 06  0c "capabilities" 08 00', SpopStatus.NoVersion],
      ['max-frame-size', '12 "supported-versions" 08 03 "2.0"  0c "capabilities" 08 00', SpopStatus.NoMaxFrameSize],
      [
        'capabilities',
        '12 "supported-versions" 08 03 "2.0"  0e "max-frame-size" 03 fc f0 06',
        SpopStatus.NoCapabilities,
      ],
    ])('without %s raises SpopHelloError with status %p', (_, payload, status) => {
      const err = thrown(() => decodeHaproxyHello(readFrame(frameOf(FrameType.HaproxyHello, bytes(payload)))));
      expect(err).toBeInstanceOf(SpopHelloError);
      expect(err).toHaveProperty('status', status);
    });

    it('rejects a max-frame-size that is not a UINT32 as an invalid frame', () => {
      const payload = bytes(
        '12 "supported-versions" 08 03 "2.0"  0e "max-frame-size" 02 fc f0 06  0c "capabilities" 08 00',
      );
      expect(() => decodeHaproxyHello(readFrame(frameOf(FrameType.HaproxyHello, payload)))).toThrow(
        SpopInvalidFrameError,
      );
    });

    it('rejects a repeated item as an invalid frame', () => {
      const payload = bytes('12 "supported-versions" 08 03 "2.0"  12 "supported-versions" 08 03 "2.0"');
      expect(() => decodeHaproxyHello(readFrame(frameOf(FrameType.HaproxyHello, payload)))).toThrow(
        SpopInvalidFrameError,
      );
    });
  });

  describe('AGENT-HELLO', () => {
    const agentHello = { version: '2.0', maxFrameSize: 16380, capabilities: ['pipelining', 'async'] };

    it('encodes byte for byte', () => {
      expect(encodeAgentHello(agentHello).toString('hex')).toBe(AGENT_HELLO.toString('hex'));
    });

    it('writes the same bytes through a ByteWriter', () => {
      const w = new ByteWriter(Buffer.alloc(4 + MIN_FRAME_SIZE), 0, 4 + MIN_FRAME_SIZE);
      writeAgentHello(w, agentHello);
      expect(w.buf.subarray(0, w.pos).toString('hex')).toBe(AGENT_HELLO.toString('hex'));
    });

    it('decodes', () => {
      expect(decodeAgentHello(readFrame(AGENT_HELLO))).toEqual(agentHello);
    });
  });

  describe('negotiateHello', () => {
    const policy = { maxFrameSize: 65536, capabilities: ['pipelining', 'fragmentation'] as const };

    function negotiate(overrides: Partial<HaproxyHello>, agentPolicy: Parameters<typeof negotiateHello>[1] = policy) {
      return negotiateHello({ ...hello, ...overrides }, agentPolicy);
    }

    it('answers version 2.0', () => {
      expect(negotiate({}).version).toBe('2.0');
    });

    it.each(['2.0', '2.0, 1.5', ' 2.1 ', '1.5,2.3'])('accepts supported-versions %p', (supportedVersions) => {
      expect(negotiate({ supportedVersions }).version).toBe('2.0');
    });

    it.each(['1.0', '3.0', '', '2', 'abc'])('refuses supported-versions %p with status 8', (supportedVersions) => {
      const err = thrown(() => negotiate({ supportedVersions }));
      expect(err).toBeInstanceOf(SpopHelloError);
      expect(err).toHaveProperty('status', SpopStatus.UnsupportedVersion);
    });

    it('refuses a max-frame-size below 256 with status 9', () => {
      const err = thrown(() => negotiate({ maxFrameSize: 255 }));
      expect(err).toBeInstanceOf(SpopHelloError);
      expect(err).toHaveProperty('status', SpopStatus.BadFrameSize);
    });

    it('accepts a max-frame-size of exactly 256', () => {
      expect(negotiate({ maxFrameSize: 256 }).maxFrameSize).toBe(256);
    });

    it("takes HAProxy's frame size when it is the smaller", () => {
      expect(negotiate({ maxFrameSize: 16380 }).maxFrameSize).toBe(16380);
    });

    it("takes the agent's frame size when it is the smaller", () => {
      expect(negotiate({ maxFrameSize: 65536 }, { maxFrameSize: 1024, capabilities: [] }).maxFrameSize).toBe(1024);
    });

    it('answers the capabilities both sides announce', () => {
      expect(negotiate({ capabilities: ['pipelining', 'async', 'fragmentation', 'future'] }).capabilities).toEqual([
        'pipelining',
        'fragmentation',
      ]);
    });

    it('answers no capability when they share none', () => {
      expect(negotiate({ capabilities: ['async'] }).capabilities).toEqual([]);
    });
  });

  describe('supportsVersion', () => {
    it.each<[string, string, boolean]>([
      ['2.0', '2.0', true],
      ['2.1', '2.0', true],
      ['2.0', '2.1', false],
      ['2.0, 1.5', '1.3', true],
      ['2.0, 1.5', '1.6', false],
      [' 2 . 0 ', '2.0', true],
      ['2.0,,', '2.0', true],
      ['3.0', '2.0', false],
      ['1.0', '2.0', false],
      ['', '2.0', false],
      [',', '2.0', false],
      ['2', '2.0', false],
      ['2.0.1', '2.0', false],
      ['2.x', '2.0', false],
      ['v2.0', '2.0', false],
      ['2.0', 'junk', false],
    ])('%p covers %p: %p', (list, version, expected) => {
      expect(supportsVersion(list, version)).toBe(expected);
    });
  });

  describe('NOTIFY', () => {
    const messages = [
      {
        name: 'check-client-ip',
        args: [
          ['ip', SpoeIp.parse('192.168.0.1')],
          ['port', 443],
        ] as const,
      },
      {
        name: 'log-request',
        args: [
          ['', 'GET'],
          ['secure', true],
          ['body', Buffer.from([0xde, 0xad])],
        ] as const,
      },
    ];

    it('encodes byte for byte', () => {
      expect(encodeNotify(16380, 300, 1, messages).toString('hex')).toBe(NOTIFY.toString('hex'));
    });

    it('writes the same bytes through a ByteWriter', () => {
      const w = new ByteWriter(Buffer.alloc(4 + 16380), 0, 4 + 16380);
      writeNotify(w, 300, 1, messages);
      expect(w.buf.subarray(0, w.pos).toString('hex')).toBe(NOTIFY.toString('hex'));
    });

    it('decodes the header', () => {
      expect(readFrame(NOTIFY)).toMatchObject({
        type: FrameType.Notify,
        flags: FrameFlag.Fin,
        streamId: 300,
        frameId: 1,
      });
    });

    it('decodes every message and argument, with names, types and values', () => {
      const decoded = decodeNotify(readFrame(NOTIFY));
      expect(decoded.map((m) => ({ name: m.name, args: m.args.map((a) => [a.name, a.type, a.value]) }))).toEqual([
        {
          name: 'check-client-ip',
          args: [
            ['ip', SpoeDataType.Ipv4, SpoeIp.parse('192.168.0.1')],
            ['port', SpoeDataType.Int32, 443],
          ],
        },
        {
          name: 'log-request',
          args: [
            ['', SpoeDataType.String, 'GET'],
            ['secure', SpoeDataType.Boolean, true],
            ['body', SpoeDataType.Binary, Buffer.from([0xde, 0xad])],
          ],
        },
      ]);
    });

    it('decodes a value when it is first read, and keeps it: get(), valueAt() and args agree', () => {
      const [message] = decodeNotify(readFrame(NOTIFY));
      const ip = message.get('ip');
      expect(ip).toEqual(SpoeIp.parse('192.168.0.1'));
      expect(message.get('ip')).toBe(ip);
      expect(message.valueAt(0)).toBe(ip);
      expect(message.args[0].value).toBe(ip);
      expect(message.get('port')).toBe(443);
      expect(message.get('absent')).toBeUndefined();
      expect([message.size, message.nameAt(1)]).toEqual([2, 'port']);
    });

    it('get() answers the first of repeated names', () => {
      const [message] = decodeNotify(
        readFrame(
          encodeNotify(256, 1, 1, [
            {
              name: 'm',
              args: [
                ['a', 1],
                ['a', 2],
              ],
            },
          ]),
        ),
      );
      expect(message.get('a')).toBe(1);
      expect(message.args.map((a) => a.value)).toEqual([1, 2]);
    });

    it('indexOf() finds the first argument of a name, compared on the wire bytes or decoded, whatever the names', () => {
      const name = fc.oneof(
        fc.constantFrom('ip', 'traceparent', 'a', 'é', '\u00c3\u00a9', 'ip\u00e9'),
        fc.string({ maxLength: 6 }),
        fc.string({ unit: 'grapheme', maxLength: 4 }),
      );
      fc.assert(
        fc.property(fc.array(name, { maxLength: 6 }), name, fc.boolean(), (names, probe, decodedFirst) => {
          const [message] = decodeNotify(
            readFrame(
              encodeNotify(16380, 1, 1, [{ name: 'm', args: names.map((n, i) => [n, i] as [string, number]) }]),
            ),
          );
          if (decodedFirst) for (let i = 0; i < message.size; i++) message.nameAt(i);
          for (const wanted of [probe, ...names]) expect(message.indexOf(wanted)).toBe(names.indexOf(wanted));
        }),
      );
    });

    it('indexOf() and hasAnyOf() answer as decoding would, whatever bytes the names are, valid UTF-8 or not', () => {
      // Arbitrary bytes, invalid UTF-8 included (decoded with U+FFFD): a probe matches what they decode to.
      const rawName = fc.oneof(
        fc.uint8Array({ maxLength: 12 }),
        fc.constantFrom('traceparent', 'tracestate', 'ip', '\ufffd', '\ufffd\ufffd').map((t) => Buffer.from(t)),
        fc.constantFrom([0xff], [0xc3], [0xe2, 0x82], [0xff, 0xfe, 0x41]).map((b) => Uint8Array.from(b)),
      );
      const probe = fc.oneof(
        fc.constantFrom('traceparent', 'tracestate', 'ip', '\ufffd', '\ufffd\ufffd', '\ufffdA', 'A', ''),
        fc.string({ maxLength: 4 }),
      );
      fc.assert(
        fc.property(fc.array(rawName, { maxLength: 5 }), fc.array(probe, { maxLength: 3 }), (raws, probes) => {
          // NOTIFY payload: message "m", then each argument's name and a NULL value.
          const payload = Buffer.concat([
            Buffer.from([1, 0x6d, raws.length]),
            ...raws.map((raw) => Buffer.concat([Buffer.from([raw.length]), raw, Buffer.from([0])])),
          ]);
          const [message] = decodeNotify(readFrame(frameOf(FrameType.Notify, payload, FrameFlag.Fin, 1, 1)));
          const names = raws.map((raw) => Buffer.from(raw).toString('utf8'));
          for (const wanted of [...probes, ...names]) expect(message.indexOf(wanted)).toBe(names.indexOf(wanted));
          expect(message.hasAnyOf(probes, Math.min(...probes.map((p) => p.length)))).toBe(
            probes.some((p) => names.includes(p)),
          );
        }),
      );
    });

    it('stringBytesAt() shows where a STRING value lies in the frame, and refuses any other type', () => {
      const [message] = decodeNotify(
        readFrame(
          encodeNotify(256, 1, 1, [
            {
              name: 'm',
              args: [
                ['n', 7],
                ['s', 'traceé'],
                ['b', Buffer.from('trace')],
              ],
            },
          ]),
        ),
      );
      const span = { buffer: Buffer.alloc(0), start: 0, end: 0 };
      expect(message.stringBytesAt(1, span)).toBe(true);
      expect(span.buffer.subarray(span.start, span.end)).toEqual(Buffer.from('traceé'));
      for (const index of [0, 2]) {
        const untouched = { buffer: Buffer.alloc(0), start: 0, end: 0 };
        expect(message.stringBytesAt(index, untouched)).toBe(false);
        expect(untouched.end).toBe(0);
      }
    });

    it('indexOf() does not take the UTF-8 bytes of a name for the Latin-1 characters they look like', () => {
      const [message] = decodeNotify(readFrame(encodeNotify(256, 1, 1, [{ name: 'm', args: [['é', 1]] }])));
      expect(message.indexOf('\u00c3\u00a9')).toBe(-1); // 'Ã©': the two bytes of 'é', one character each
      expect(message.indexOf('é')).toBe(0);
    });

    it('checks every value when the frame is read, before any is decoded', () => {
      // An INT32 out of range in the second argument: the frame is invalid even if only the first is ever read.
      const wire = frameOf(
        FrameType.Notify,
        bytes('01 "m" 02  01 "a" 00  01 "b" 02 ff ff ff ff 7f'),
        FrameFlag.Fin,
        1,
        1,
      );
      expect(() => decodeNotify(readFrame(wire))).toThrow(SpopInvalidFrameError);
    });

    it('decodes an empty LIST-OF-MESSAGES', () => {
      expect(decodeNotify(readFrame(encodeNotify(256, 1, 1, [])))).toEqual([]);
    });

    it('rejects a message announcing more arguments than it carries', () => {
      const wire = frameOf(FrameType.Notify, bytes('01 "m" 02  01 "a" 00'), FrameFlag.Fin, 1, 1);
      expect(() => decodeNotify(readFrame(wire))).toThrow(SpopInvalidFrameError);
    });

    it('refuses to encode more than 255 arguments (NB-ARGS is one byte)', () => {
      const args = Array.from({ length: 256 }, (_, i) => [`a${i}`, i] as const);
      expect(() => encodeNotify(16380, 1, 1, [{ name: 'm', args }])).toThrow(SpoeEncodeError);
    });
  });

  describe('names (messages, arguments, items, variables)', () => {
    function notifyNames(messageName: string, argNames: string[]): Buffer {
      return encodeNotify(16380, 1, 1, [{ name: messageName, args: argNames.map((n) => [n, null] as const) }]);
    }

    function decodedNames(wire: Buffer): string[] {
      const [message] = decodeNotify(readFrame(wire));
      return [message.name, ...message.args.map((a) => a.name)];
    }

    it('decodes any names, again and again, whatever names came before', () => {
      const name = fc.oneof(
        fc.string({ maxLength: 6 }),
        fc.string({ unit: 'binary', maxLength: 70 }),
        fc.constantFrom('ip', 'host', 'check-client-ip'),
      );
      fc.assert(
        fc.property(
          fc.array(fc.tuple(name, fc.array(name, { maxLength: 8 })), { minLength: 1, maxLength: 20 }),
          (messages) => {
            for (let pass = 0; pass < 2; pass++) {
              for (const [messageName, argNames] of messages)
                expect(decodedNames(notifyNames(messageName, argNames))).toEqual([messageName, ...argNames]);
            }
          },
        ),
        { numRuns: 100 },
      );
    });

    it('decodes names correctly after the buffer they were first read from changed', () => {
      const letters = 'abcdefghijklmnopqrstuvwxyz';
      for (let i = 0; i < 2000; i++) {
        const other = `x${letters[i % 26]}${letters[Math.floor(i / 26) % 26]}${letters[Math.floor(i / 676) % 26]}z`;
        const wire = notifyNames('check', []);
        expect(decodedNames(wire)).toEqual(['check']);
        wire.write(other, wire.indexOf('check'), 'latin1');
        expect(decodedNames(notifyNames(other, []))).toEqual([other]);
      }
    });

    it('decodes a name that is not valid UTF-8 with replacement characters, every time', () => {
      const payload = bytes('02 ff 41 00');
      for (let i = 0; i < 3; i++) {
        expect(decodeNotify(readFrame(frameOf(FrameType.Notify, payload, FrameFlag.Fin, 1, 1)))[0].name).toBe(
          '\ufffdA',
        );
      }
    });

    it('encodes non-ASCII names as UTF-8', () => {
      const wire = encodeAck(256, 1, 1, [{ type: ActionType.UnsetVar, scope: VarScope.Session, name: 'é' }]);
      expect(wire.subarray(wire.length - 3).toString('hex')).toBe('02c3a9');
    });
  });

  describe('ACK', () => {
    it('encodes a set-var byte for byte', () => {
      const actions: SpoeAction[] = [{ type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: 42 }];
      expect(encodeAck(16380, 300, 1, actions).toString('hex')).toBe(ACK.toString('hex'));
    });

    it.each<[string, VarScope, string]>([
      ['proc', VarScope.Process, '00'],
      ['sess', VarScope.Session, '01'],
      ['txn', VarScope.Transaction, '02'],
      ['req', VarScope.Request, '03'],
      ['res', VarScope.Response, '04'],
    ])('encodes a set-var in scope %s as scope byte %s', (_, scope, scopeByte) => {
      const expected = bytes(`00 00 00 14  67 00 00 00 01 01 02  01 03 ${scopeByte} 05 "score" 08 02 "ok"`);
      const wire = encodeAck(16380, 1, 2, [{ type: ActionType.SetVar, scope, name: 'score', value: 'ok' }]);
      expect(wire.toString('hex')).toBe(expected.toString('hex'));
      expect(decodeAck(readFrame(wire))).toEqual([
        { type: ActionType.SetVar, scope, name: 'score', value: 'ok', dataType: SpoeDataType.String },
      ]);
    });

    it.each([VarScope.Process, VarScope.Session, VarScope.Transaction, VarScope.Request, VarScope.Response])(
      'encodes an unset-var in scope %i',
      (scope) => {
        const expected = bytes(`00 00 00 10  67 00 00 00 01 01 02  02 02 0${scope} 05 "score"`);
        const wire = encodeAck(16380, 1, 2, [{ type: ActionType.UnsetVar, scope, name: 'score' }]);
        expect(wire.toString('hex')).toBe(expected.toString('hex'));
        expect(decodeAck(readFrame(wire))).toEqual([{ type: ActionType.UnsetVar, scope, name: 'score' }]);
      },
    );

    it('encodes an ACK without actions', () => {
      expect(encodeAck(256, 7, 8, []).toString('hex')).toBe(bytes('00 00 00 07  67 00 00 00 01 07 08').toString('hex'));
    });

    it('decodes several actions of several types in order', () => {
      const ip = SpoeIp.parse('10.0.0.1');
      const wire = encodeAck(16380, 1, 1, [
        { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'a', value: TypedData.uint64(2n ** 64n - 1n) },
        { type: ActionType.UnsetVar, scope: VarScope.Request, name: 'b' },
        { type: ActionType.SetVar, scope: VarScope.Response, name: 'c', value: ip },
        { type: ActionType.SetVar, scope: VarScope.Process, name: 'd', value: null },
      ]);
      expect(decodeAck(readFrame(wire))).toEqual([
        {
          type: ActionType.SetVar,
          scope: VarScope.Transaction,
          name: 'a',
          value: UINT64_MAX,
          dataType: SpoeDataType.Uint64,
        },
        { type: ActionType.UnsetVar, scope: VarScope.Request, name: 'b' },
        { type: ActionType.SetVar, scope: VarScope.Response, name: 'c', value: ip, dataType: SpoeDataType.Ipv4 },
        { type: ActionType.SetVar, scope: VarScope.Process, name: 'd', value: null, dataType: SpoeDataType.Null },
      ]);
    });

    it('refuses to encode an unknown scope', () => {
      expect(() =>
        encodeAck(256, 1, 1, [{ type: ActionType.SetVar, scope: 5 as VarScope, name: 'x', value: 1 }]),
      ).toThrow(SpoeEncodeError);
    });

    it('refuses to encode an unknown action type', () => {
      expect(() => encodeAck(256, 1, 1, [{ type: 3 as ActionType, scope: VarScope.Session, name: 'x' }])).toThrow(
        SpoeEncodeError,
      );
    });

    it.each<[string, string]>([
      ['an unknown scope', '01 03 05 01 "x" 00'],
      ['set-var with 2 arguments', '01 02 01 01 "x" 00'],
      ['unset-var with 3 arguments', '02 03 01 01 "x"'],
      ['an unknown action type', '03 02 01 01 "x"'],
      ['a truncated action', '01 03 01 05 "x"'],
    ])('rejects %s when decoding', (_, payload) => {
      expect(() => decodeAck(readFrame(frameOf(FrameType.Ack, bytes(payload), FrameFlag.Fin, 1, 1)))).toThrow(
        SpopInvalidFrameError,
      );
    });
  });

  describe('DISCONNECT', () => {
    it('encodes an AGENT-DISCONNECT byte for byte', () => {
      expect(encodeAgentDisconnect({ status: 3, message: 'frame is too big' }).toString('hex')).toBe(
        AGENT_DISCONNECT.toString('hex'),
      );
    });

    it('writes the same bytes through a ByteWriter', () => {
      const w = new ByteWriter(Buffer.alloc(4 + MIN_FRAME_SIZE), 0, 4 + MIN_FRAME_SIZE);
      writeAgentDisconnect(w, { status: 3, message: 'frame is too big' });
      expect(w.buf.subarray(0, w.pos).toString('hex')).toBe(AGENT_DISCONNECT.toString('hex'));
    });

    it('encodes a HAPROXY-DISCONNECT the same way with type 2', () => {
      const expected = Buffer.from(AGENT_DISCONNECT);
      expected[4] = 0x02;
      expect(encodeHaproxyDisconnect({ status: 3, message: 'frame is too big' }).toString('hex')).toBe(
        expected.toString('hex'),
      );
    });

    it('decodes either DISCONNECT', () => {
      expect(decodeDisconnect(readFrame(AGENT_DISCONNECT))).toEqual({ status: 3, message: 'frame is too big' });
      expect(decodeDisconnect(readFrame(encodeHaproxyDisconnect({ status: 0, message: 'normal' })))).toEqual({
        status: 0,
        message: 'normal',
      });
    });

    it('truncates a long message on a character boundary so the frame fits 256 bytes', () => {
      const wire = encodeAgentDisconnect({ status: 99, message: 'a' + '😀'.repeat(100) });
      const message = decodeDisconnect(readFrame(wire)).message;
      expect(wire.length - 4).toBeLessThanOrEqual(MIN_FRAME_SIZE);
      expect(message).toBe('a' + '😀'.repeat(49));
    });

    it.each<[string, string]>([
      ['status-code', '07 "message" 08 01 "x"'],
      ['message', '0b "status-code" 03 03'],
    ])('rejects a DISCONNECT without %s', (_, payload) => {
      expect(() => decodeDisconnect(readFrame(frameOf(FrameType.AgentDisconnect, bytes(payload))))).toThrow(
        SpopInvalidFrameError,
      );
    });
  });

  describe('frame header', () => {
    it('encodes FIN as flags 00 00 00 01', () => {
      expect(encodeAck(256, 1, 1, []).subarray(5, 9).toString('hex')).toBe('00000001');
    });

    it('encodes ABORT with FIN as flags 00 00 00 03', () => {
      const wire = encodeAck(256, 1, 1, [], FrameFlag.Fin | FrameFlag.Abort);
      expect(wire.subarray(5, 9).toString('hex')).toBe('00000003');
      expect(readFrame(wire).flags).toBe(FrameFlag.Fin | FrameFlag.Abort);
    });

    it('encodes a fragment without FIN as flags 00 00 00 00', () => {
      const wire = encodeNotify(256, 1, 1, [], 0);
      expect(wire.subarray(5, 9).toString('hex')).toBe('00000000');
      expect(readFrame(wire).flags).toBe(0);
    });

    it('encodes 64-bit stream-id and frame-id byte for byte', () => {
      const wire = encodeAck(256, UINT64_MAX, 2n ** 53n, []);
      expect(wire.toString('hex')).toBe(
        bytes('00 00 00 17  67 00 00 00 01  ff f0 fe fe fe fe fe fe fe 0e  f0 f1 fe fe fe fe fe 7e').toString('hex'),
      );
    });

    it.each<[string, number | bigint]>([
      ['0', 0],
      ['239', 239],
      ['240', 240],
      ['2^32', 2 ** 32],
      ['2^53-1', Number.MAX_SAFE_INTEGER],
      ['2^53', 2n ** 53n],
      ['2^63', 2n ** 63n],
      ['2^64-1', UINT64_MAX],
    ])('round-trips the id %s (a number when safe, a bigint above)', (_, id) => {
      const frame = readFrame(encodeAck(256, id, id, []));
      expect(frame.streamId).toBe(id);
      expect(frame.frameId).toBe(id);
    });

    it('rejects a frame whose frame-id is cut short', () => {
      expect(() => readFrame(bytes('00 00 00 07  67 00 00 00 01 01 f0'))).toThrow(SpopInvalidFrameError);
    });
  });

  describe('writeFrame limits', () => {
    it('fits a frame of exactly max-frame-size bytes', () => {
      // 7 header bytes + action type, nb-args, scope (3) + name length (2 bytes, as 244 >= 240) + 244 = 256.
      const wire = encodeAck(256, 1, 1, [
        { type: ActionType.UnsetVar, scope: VarScope.Session, name: 'x'.repeat(244) },
      ]);
      expect(wire.readUInt32BE(0)).toBe(256);
      expect(wire).toHaveLength(260);
    });

    it('refuses a frame one byte over max-frame-size with SpoeEncodeError', () => {
      expect(() =>
        encodeAck(256, 1, 1, [{ type: ActionType.UnsetVar, scope: VarScope.Session, name: 'x'.repeat(245) }]),
      ).toThrow(SpoeEncodeError);
    });

    it('leaves the writer where it was after an overflow', () => {
      const buf = Buffer.alloc(300, 0xaa);
      const w = new ByteWriter(buf, 10, 10 + 4 + 256);
      const actions: SpoeAction[] = [
        { type: ActionType.SetVar, scope: VarScope.Session, name: 'n', value: 'v'.repeat(300) },
      ];
      expect(() => writeAck(w, 1, 1, actions)).toThrow(SpoeEncodeError);
      expect(w.pos).toBe(10);
    });

    it('overflows cleanly on a varint crossing the limit', () => {
      const w = new ByteWriter(Buffer.alloc(64), 0, 16);
      expect(() =>
        writeFrame(w, FrameType.Ack, FrameFlag.Fin, UINT64_MAX, UINT64_MAX, () => undefined, undefined),
      ).toThrow(SpoeEncodeError);
      expect(w.pos).toBe(0);
    });

    it('lets errors other than overflow through, still restoring the position', () => {
      const w = new ByteWriter(Buffer.alloc(300), 5, 5 + 260);
      const err = thrown(() =>
        writeAck(w, 1, 1, [{ type: ActionType.SetVar, scope: VarScope.Session, name: 'x', value: 1.5 }]),
      );
      expect(err).toBeInstanceOf(SpoeEncodeError);
      expect(err).not.toBeInstanceOf(SpopError);
      expect(w.pos).toBe(5);
    });
  });

  describe('FrameWriter', () => {
    const ack = (i: number): SpoeAction[] => [
      { type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: i },
    ];

    function recordingWriter(maxFrameSize = 16380): { writer: FrameWriter; calls: Buffer[] } {
      const calls: Buffer[] = [];
      return { writer: new FrameWriter((data) => calls.push(data), maxFrameSize), calls };
    }

    function writeAcks(writer: FrameWriter, from: number, count: number): Buffer[] {
      const expected: Buffer[] = [];
      for (let i = from; i < from + count; i++) {
        writeAck(writer.begin(), i, i, ack(i));
        writer.commit();
        expected.push(encodeAck(16380, i, i, ack(i)));
      }
      return expected;
    }

    it('does not write during the turn that encodes', () => {
      const { writer, calls } = recordingWriter();
      writeAcks(writer, 0, 3);
      expect(calls).toHaveLength(0);
      expect(writer.pendingBytes).toBeGreaterThan(0);
    });

    it('hands every frame of one turn to the sink in one call, back to back', async () => {
      const { writer, calls } = recordingWriter();
      const expected = writeAcks(writer, 0, 100);
      await nextTurn();
      expect(calls).toHaveLength(1);
      expect(calls[0].equals(Buffer.concat(expected))).toBe(true);
      expect(writer.pendingBytes).toBe(0);
    });

    it('makes one sink call per turn', async () => {
      const { writer, calls } = recordingWriter();
      const first = writeAcks(writer, 0, 10);
      await nextTurn();
      const second = writeAcks(writer, 10, 10);
      await nextTurn();
      await nextTurn();
      expect(calls).toHaveLength(2);
      expect(calls[0].equals(Buffer.concat(first))).toBe(true);
      expect(calls[1].equals(Buffer.concat(second))).toBe(true);
    });

    it('makes no sink call in a turn without frames', async () => {
      const { writer, calls } = recordingWriter();
      writer.begin();
      await nextTurn();
      expect(calls).toHaveLength(0);
    });

    it('leaves nothing behind when an encoder throws between begin and commit', async () => {
      const { writer, calls } = recordingWriter(256);
      writeAck(writer.begin(), 1, 1, ack(1));
      writer.commit();
      expect(() =>
        writeAck(writer.begin(), 2, 2, [{ type: ActionType.UnsetVar, scope: VarScope.Session, name: 'x'.repeat(300) }]),
      ).toThrow(SpoeEncodeError);
      writeAck(writer.begin(), 3, 3, ack(3));
      writer.commit();
      await nextTurn();
      expect(calls).toHaveLength(1);
      expect(calls[0].equals(Buffer.concat([encodeAck(256, 1, 1, ack(1)), encodeAck(256, 3, 3, ack(3))]))).toBe(true);
    });

    it('forgets a begin that was not committed', async () => {
      const { writer, calls } = recordingWriter();
      writeAck(writer.begin(), 1, 1, ack(1));
      writeAck(writer.begin(), 2, 2, ack(2));
      writer.commit();
      await nextTurn();
      expect(calls[0].equals(encodeAck(16380, 2, 2, ack(2)))).toBe(true);
    });

    it('flush() writes at once and cancels the scheduled write', async () => {
      const { writer, calls } = recordingWriter();
      const expected = writeAcks(writer, 0, 5);
      writer.flush();
      expect(calls).toHaveLength(1);
      expect(calls[0].equals(Buffer.concat(expected))).toBe(true);
      await nextTurn();
      expect(calls).toHaveLength(1);
    });

    it('discard() drops what is pending', async () => {
      const { writer, calls } = recordingWriter();
      writeAcks(writer, 0, 5);
      writer.discard();
      expect(writer.pendingBytes).toBe(0);
      await nextTurn();
      expect(calls).toHaveLength(0);
    });

    it('keeps working across slab boundaries (more than 64 KiB in one turn)', async () => {
      const { writer, calls } = recordingWriter();
      const expected = writeAcks(writer, 0, 5000);
      const total = Buffer.concat(expected);
      expect(total.length).toBeGreaterThan(64 * 1024 * 1.5);
      await nextTurn();
      expect(calls).toHaveLength(1);
      expect(calls[0].equals(total)).toBe(true);
    });

    it('keeps frames of nearly max-frame-size whole across slab boundaries', async () => {
      const { writer, calls } = recordingWriter(16380);
      const big = (i: number): SpoeAction[] => [
        { type: ActionType.SetVar, scope: VarScope.Transaction, name: 'blob', value: Buffer.alloc(16300, i) },
      ];
      const expected: Buffer[] = [];
      for (let i = 0; i < 10; i++) {
        writeAck(writer.begin(), i, i, big(i));
        writer.commit();
        expected.push(encodeAck(16380, i, i, big(i)));
      }
      await nextTurn();
      expect(calls).toHaveLength(1);
      const reader = new FrameReader(16380);
      reader.push(calls[0]);
      for (let i = 0; i < 10; i++) {
        const frame = reader.next();
        expect(frame?.frameId).toBe(i);
        expect(frame && decodeAck(frame)).toEqual([
          {
            type: ActionType.SetVar,
            scope: VarScope.Transaction,
            name: 'blob',
            value: Buffer.alloc(16300, i),
            dataType: SpoeDataType.Binary,
          },
        ]);
      }
      expect(reader.next()).toBeUndefined();
      expect(calls[0].equals(Buffer.concat(expected))).toBe(true);
    });

    it('never overwrites bytes already handed to the sink', async () => {
      const { writer, calls } = recordingWriter();
      writeAcks(writer, 0, 10);
      await nextTurn();
      const copy = Buffer.from(calls[0]);
      for (let turn = 0; turn < 5; turn++) {
        writeAcks(writer, 1000 * (turn + 1), 2000);
        await nextTurn();
      }
      expect(calls[0].equals(copy)).toBe(true);
    });

    it('applies a raised maxFrameSize to the next frame', async () => {
      const { writer, calls } = recordingWriter(256);
      writer.maxFrameSize = 100_000;
      const actions: SpoeAction[] = [
        { type: ActionType.SetVar, scope: VarScope.Session, name: 'big', value: Buffer.alloc(90_000, 7) },
      ];
      writeAck(writer.begin(), 1, 1, actions);
      writer.commit();
      await nextTurn();
      expect(calls[0].equals(encodeAck(100_000, 1, 1, actions))).toBe(true);
    });
  });
});
