import { Controller, Logger } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpopStatus, VarScope } from 'nestjs-spoe';
import { decodeAck, encodeNotify, FrameType } from 'nestjs-spoe/protocol';
import { RawPeer } from '../support/raw-peer';
import { startAgent, TestAgent } from '../support/agent';

@Controller()
class SizesController {
  @MessagePattern('len')
  len(@Payload('s') s: string) {
    return SetVar.txn('len', s.length);
  }

  @MessagePattern('blob')
  blob(@Payload('size') size: number) {
    return SetVar.txn('blob', 'x'.repeat(size));
  }
}

/**
 * A NOTIFY of message 'len' whose frame (without its 4-byte length) is exactly `frameLength` bytes; `s` its argument.
 */
function notifyOfLength(frameLength: number, streamId: number): { frame: Buffer; s: string } {
  const notify = (s: string): Buffer => encodeNotify(1 << 20, streamId, 1, [{ name: 'len', args: [['s', s]] }]);
  // From 240 bytes on, a string's length takes 2 bytes: the overhead is the same for every length used here.
  const overhead = notify('y'.repeat(300)).readUInt32BE(0) - 300;
  const s = 'y'.repeat(frameLength - overhead);
  const frame = notify(s);
  expect(frame.readUInt32BE(0)).toBe(frameLength);
  return { frame, s };
}

// The agent allows 16380 bytes; HAProxy announces 1024 (tune.bufsize 1028): every frame after the HELLO is bounded
// by 1024, whichever side sends it (SPOE.txt 3.2.5: "This value will be used for all subsequent frames").
describe('the max-frame-size negotiated in the HELLO, smaller than the agent’s own, bounds a live connection', () => {
  let agent: TestAgent;
  beforeAll(async () => {
    agent = await startAgent(
      { controllers: [SizesController] },
      { maxFrameSize: 16380, errorVariable: { scope: VarScope.Transaction, name: 'spoe_error' } },
    );
  });
  afterAll(() => agent.close());
  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  it('a NOTIFY of exactly the negotiated size is answered; one byte more gets AGENT-DISCONNECT status 3', async () => {
    const { peer, agentHello } = await RawPeer.hello({ port: agent.port }, { maxFrameSize: 1024 });
    expect(agentHello.maxFrameSize).toBe(1024);
    const largest = notifyOfLength(1024, 1);
    peer.send(largest.frame);
    expect(decodeAck(await peer.nextFrame())).toMatchObject([{ name: 'len', value: largest.s.length }]);
    peer.send(notifyOfLength(1025, 3).frame);
    expect(await peer.expectDisconnect()).toMatchObject({ status: SpopStatus.FrameTooBig });
  });

  it('an ACK that would exceed the negotiated size goes without its actions, with the error variable (1)', async () => {
    const { peer } = await RawPeer.hello({ port: agent.port }, { maxFrameSize: 1024 });
    peer.send(encodeNotify(1024, 1, 1, [{ name: 'blob', args: [['size', 900]] }]));
    expect(decodeAck(await peer.nextFrame())).toMatchObject([{ name: 'blob' }]);
    peer.send(encodeNotify(1024, 3, 1, [{ name: 'blob', args: [['size', 2000]] }]));
    const tooBig = await peer.nextFrame();
    expect(tooBig.type).toBe(FrameType.Ack);
    // The error variable's value is what HAProxy sees: 1, a handler failed.
    expect(decodeAck(tooBig).map((a) => [a.name, a.value])).toEqual([['spoe_error', 1]]);
    peer.destroy();
  });
});
