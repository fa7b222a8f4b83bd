import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { AddressInfo, createServer } from 'node:net';
import { SetVar, SpoeIp, SpoeServer } from '../libs/spoe/src';
import {
  decodeHaproxyHello,
  decodeNotify,
  FrameReader,
  FrameType,
  FrameWriter,
  negotiateHello,
  VarScope,
  ActionType,
  writeAck,
  writeAgentHello,
} from '../libs/spoe/src/protocol';

/**
 * The agents the benchmark compares, each started in its own process and printing `READY <port>`:
 * - `nest`: nestjs-spoe, a `@MessagePattern('check-client-ip')` handler returning one SetVar;
 * - `raw`: the same answer from a dependency-free agent on the same codec, no Nest, no rxjs (the ceiling).
 */
const kind = process.argv[2];

@Controller()
class ReputationController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp) {
    return SetVar.sess('ip_score', ip.family === 4 ? 10 : 20);
  }
}

@Module({ controllers: [ReputationController] })
class BenchModule {}

async function startNest(): Promise<number> {
  const server = new SpoeServer({ host: '127.0.0.1', port: 0 });
  const app = await NestFactory.createMicroservice(BenchModule, { strategy: server, logger: ['error'] });
  await app.listen();
  return (server.address as AddressInfo).port;
}

function startRaw(): Promise<number> {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const reader = new FrameReader(16380);
    const writer = new FrameWriter((data) => socket.write(data), 16380);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      for (let frame = reader.next(); frame; frame = reader.next()) {
        const w = writer.begin();
        if (frame.type === FrameType.HaproxyHello) {
          writeAgentHello(w, negotiateHello(decodeHaproxyHello(frame), { maxFrameSize: 16380, capabilities: ['pipelining'] }));
        } else if (frame.type === FrameType.Notify) {
          const ip = decodeNotify(frame)[0].args[0].value as SpoeIp;
          writeAck(w, frame.streamId, frame.frameId, [{ type: ActionType.SetVar, scope: VarScope.Session, name: 'ip_score', value: ip.family === 4 ? 10 : 20 }]);
        } else continue;
        writer.commit();
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

process.on('SIGINT', () => process.exit(0));
void (kind === 'nest' ? startNest() : startRaw()).then((port) => console.log(`READY ${port}`));
