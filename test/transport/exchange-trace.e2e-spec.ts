import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeIp } from 'nestjs-spoe';
import { encodeHaproxyHello, encodeNotify, FrameType } from 'nestjs-spoe/protocol';
import { dumpFrame } from '../support/frame-dump';
import { RawPeer } from '../support/raw-peer';
import { startAgent } from '../support/agent';

@Controller()
class ReputationController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp) {
    return [SetVar.sess('ip_score', ip.toString().startsWith('10.') ? 100 : 0)];
  }
}

describe('a sample exchange, byte by byte', () => {
  it('HELLO, NOTIFY and ACK as they cross the wire', async () => {
    const agent = await startAgent({ controllers: [ReputationController] });
    const peer = await RawPeer.connect({ port: agent.port });
    const received: Buffer[] = [];
    peer.socket.prependListener('data', (chunk: Buffer) => received.push(chunk));
    try {
      const hello = encodeHaproxyHello({
        supportedVersions: '2.0',
        maxFrameSize: 16380,
        capabilities: ['pipelining'],
        healthcheck: false,
        engineId: 'e1',
      });
      peer.send(hello);
      expect((await peer.nextFrame()).type).toBe(FrameType.AgentHello);
      const agentHello = Buffer.concat(received.splice(0));
      const notify = encodeNotify(16380, 1, 1, [{ name: 'check-client-ip', args: [['ip', SpoeIp.parse('10.1.2.3')]] }]);
      peer.send(notify);
      expect((await peer.nextFrame()).type).toBe(FrameType.Ack);
      const ack = Buffer.concat(received.splice(0));
      const trace = [
        ['HAProxy → agent: HAPROXY-HELLO', hello],
        ['agent → HAProxy: AGENT-HELLO', agentHello],
        ['HAProxy → agent: NOTIFY', notify],
        ['agent → HAProxy: ACK', ack],
      ]
        .map(([title, bytes]) => `${title as string}\n${dumpFrame(bytes as Buffer)}`)
        .join('\n\n');
      process.stdout.write(`\n${trace}\n\n`);
      expect(dumpFrame(ack)).toContain('VAR-VALUE INT32 100');
      expect(dumpFrame(agentHello)).toContain('item "version" =');
    } finally {
      peer.destroy();
      await agent.close();
    }
  });
});
