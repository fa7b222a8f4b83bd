import 'reflect-metadata';
import {
  CallHandler,
  Controller,
  ExecutionContext,
  Injectable,
  Module,
  NestInterceptor,
  PipeTransform,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { AddressInfo } from 'node:net';
import { Observable } from 'rxjs';
import { SetVar, SpoeIp, SpoeModule, SpoeServer, SpoeValue } from '../../libs/spoe/src';

/**
 * The nestjs-spoe agents of `npm run bench:frames`, one per process (`node -r @swc-node/register nest-agents.ts KIND`),
 * each answering `check-client-ip` with set-var sess.ip_score (10 for IPv4, 20 for IPv6) like bench/agents/ceiling.js,
 * and printing `READY <port>`:
 * - `server`: SpoeServer in a Nest microservice with the plainest @MessagePattern handler (the transport's own cost);
 * - `pipeline`: the same with what real applications add around a handler: one global interceptor (a pass-through)
 *   and one pipe validating the `ip` argument (the cost of Nest's enhancer pipeline on top of the transport).
 */

@Controller()
class PlainController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip') ip: SpoeIp): SetVar {
    return SetVar.sess('ip_score', ip.family === 4 ? 10 : 20);
  }
}

/** Accepts an IP as sent (IPV4/IPV6) or as a STRING, as a real handler fed by `req.hdr(x-real-ip)` would. */
@Injectable()
class IpPipe implements PipeTransform<SpoeValue | undefined, SpoeIp> {
  transform(value: SpoeValue | undefined): SpoeIp {
    if (value instanceof SpoeIp) return value;
    if (typeof value === 'string') return SpoeIp.parse(value.trim());
    throw new RpcException('argument "ip" must be an IP address');
  }
}

/** Does nothing but be there: what any interceptor costs before its own work (logging, metrics, tracing…). */
@Injectable()
class PassThroughInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle();
  }
}

@Controller()
class PipelineController {
  @MessagePattern('check-client-ip')
  check(@Payload('ip', IpPipe) ip: SpoeIp): SetVar {
    return SetVar.sess('ip_score', ip.family === 4 ? 10 : 20);
  }
}

// SpoeModule, as users are told: handlers then run through nestjs-spoe's pipeline rather than Nest's generic one.
@Module({ imports: [SpoeModule], controllers: [PlainController] })
class ServerModule {}

@Module({ imports: [SpoeModule], controllers: [PipelineController], providers: [IpPipe] })
class PipelineModule {}

async function start(kind: string): Promise<number> {
  if (kind !== 'server' && kind !== 'pipeline') throw new Error(`unknown agent kind "${kind}" (server or pipeline)`);
  const server = new SpoeServer({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
  const app = await NestFactory.createMicroservice(kind === 'server' ? ServerModule : PipelineModule, {
    strategy: server,
    logger: ['error'],
  });
  if (kind === 'pipeline') app.useGlobalInterceptors(new PassThroughInterceptor());
  await app.listen();
  return (server.address as AddressInfo).port;
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
start(process.argv[2] ?? '').then(
  (port) => console.log(`READY ${port}`),
  (error: Error) => {
    console.error(`nest bench agent: ${error.message}`);
    process.exit(1);
  },
);
