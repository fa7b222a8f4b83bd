import * as protocol from './protocol';
import * as root from './index';

/**
 * The root entry point is a curated API: what an application needs, not the codec. A new export is a decision, made
 * here on purpose; the codec's own names (ByteReader, FrameWriter, readKvList…) are only in 'nestjs-spoe/protocol'.
 */
describe('the public API of nestjs-spoe', () => {
  it('exports exactly these values from the root entry point (types are checked by the build)', () => {
    expect(Object.keys(root).sort()).toEqual([
      'ActionType',
      'HAPROXY_MAX_FRAME_SIZE',
      'MAX_TIMEOUT_MS',
      'ParseSpoeIpPipe',
      'SPOE_CLIENT_DEFAULTS',
      'SPOE_DEFAULTS',
      'SPOE_MODULE_OPTIONS',
      'SPOE_TRANSPORT',
      'SetVar',
      'SpoeArgument',
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
      'formatAddress',
      'isSpoeAction',
      'isVariableName',
      'normalizeSpoeOptions',
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
    for (const name of ['SpoeIp', 'TypedData', 'SpoeDataType', 'SpopStatus', 'SpopError', 'ActionType', 'VarScope']) {
      expect(root[name as keyof typeof root]).toBe(protocol[name as keyof typeof protocol]);
    }
  });
});
