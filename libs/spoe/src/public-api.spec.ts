import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as protocol from './protocol';
import * as root from './index';

/**
 * The root entry point is a curated API: what an application needs, not the codec. A new export is a decision, made
 * here on purpose; the codec's own names (ByteReader, FrameWriter, readKvList…) are only in 'nestjs-spoe/protocol'.
 */
describe('the public API of nestjs-spoe', () => {
  it('exports exactly these values from the root entry point (types are checked by the build)', () => {
    expect(Object.keys(root).sort()).toEqual([
      'HAPROXY_MAX_FRAME_SIZE',
      'MAX_TIMEOUT_MS',
      'ParseSpoeIpPipe',
      'SPOE_CLIENT_DEFAULTS',
      'SPOE_DEFAULTS',
      'SPOE_MODULE_OPTIONS',
      'SPOE_TRANSPORT',
      'SetVar',
      'SpoeArgument',
      'SpoeConsoleLogger',
      'SpoeContext',
      'SpoeDataType',
      'SpoeEncodeError',
      'SpoeFailure',
      'SpoeHandlerError',
      'SpoeIp',
      'SpoeMessage',
      'SpoeModule',
      'SpoeOptionsError',
      'SpoeServer',
      'SpoeStatus',
      'SpopError',
      'SpopStatus',
      'TypedData',
      'UnsetVar',
      'VarScope',
      'currentSpoeContext',
      'formatAddress',
      'isSpoeAction',
      'isVariableName',
      'normalizeSpoeOptions',
      'spoeLogFields',
      'spopStatusReason',
    ]);
  });

  it('leaves the codec to nestjs-spoe/protocol, which shares the values both need', () => {
    for (const name of [
      'ByteReader',
      'ByteWriter',
      'FrameReader',
      'FrameWriter',
      'NotifyAssembler',
      'readKvList',
      'encodeNotify',
      'decodeAck',
    ]) {
      expect(protocol).toHaveProperty(name);
      expect(root).not.toHaveProperty(name);
    }
    for (const name of ['SpoeIp', 'TypedData', 'SpoeDataType', 'SpopStatus', 'SpopError', 'VarScope']) {
      expect(root[name as keyof typeof root]).toBe(protocol[name as keyof typeof protocol]);
    }
  });
});

/** The root entry point and the folders of the frame path (codec, server, actions, pipes). */
const FRAME_PATH = String.raw`/\/libs\/spoe\/src\/(index\.ts$|protocol\/|server\/|actions\/|pipes\/|logging\/)/`;

describe('the modules a NOTIFY passes through', () => {
  it('keep fast exports when loaded from the root entry point from source (see index.ts)', () => {
    const script = `
      const fast = new Function('o', 'return %HasFastProperties(o)');
      require(${JSON.stringify(path.join(__dirname, 'index.ts'))});
      const checked = Object.keys(require.cache).filter((file) => ${FRAME_PATH}.test(file));
      const slow = checked.filter((file) => !fast(require.cache[file].exports));
      const names = (files) => files.map((file) => path.relative(${JSON.stringify(__dirname)}, file));
      const peers = Object.keys(require.cache).filter((file) => /node_modules.(prom-client|@opentelemetry)./.test(file));
      process.stdout.write(JSON.stringify({ checked: names(checked), slow: names(slow), peers }));
    `;
    const out = execFileSync(process.execPath, ['--allow-natives-syntax', '-r', '@swc-node/register', '-e', script], {
      cwd: path.join(__dirname, '../../..'),
      encoding: 'utf8',
    });
    const { checked, slow, peers } = JSON.parse(out) as { checked: string[]; slow: string[]; peers: string[] };
    expect(peers).toEqual([]); // the optional peers of the subpaths (prom-client, @opentelemetry/api) stay unloaded
    expect(checked).toEqual(expect.arrayContaining(['index.ts', 'protocol/ack.ts', 'server/connection.ts']));
    expect(slow).toEqual([]);
  });
});
