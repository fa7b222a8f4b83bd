import {
  ArgumentsHost,
  CallHandler,
  CanActivate,
  Catch,
  Controller,
  ExecutionContext,
  Injectable,
  Logger,
  Module,
  NestInterceptor,
  PipeTransform,
  Scope,
  UseFilters,
  UseGuards,
  UseInterceptors,
  UsePipes,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BaseRpcExceptionFilter, Ctx, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { SetVar, SpoeContext, SpoeHandlerError, SpoeIp, SpoeModule, SpoeServer } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { AddressInfo } from 'node:net';
import { Observable, of } from 'rxjs';
import { map, tap } from 'rxjs/operators';
import { startAgent, TestAgent } from '../support/agent';

@Injectable()
class AllowListGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const ctx = context.switchToRpc().getContext<SpoeContext>();
    return ctx.getArguments().some((a) => a.name === 'token' && a.value === 'let-me-in');
  }
}

@Injectable()
class ScoreBoostInterceptor implements NestInterceptor {
  intercept(_: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((actions: SetVar[]) => [...actions, SetVar.txn('intercepted', true)]));
  }
}

@Injectable()
class ToStringPipe implements PipeTransform {
  transform(value: unknown): string {
    return value instanceof SpoeIp ? `ip:${value.toString()}` : String(value);
  }
}

@Catch()
class ErrorToActionsFilter extends BaseRpcExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): Observable<unknown> {
    void host;
    return of([SetVar.txn('filtered', exception instanceof RpcException ? String(exception.getError()) : 'other')]);
  }
}

let instances = 0;
@Injectable({ scope: Scope.REQUEST })
class PerRequestCounter {
  readonly id = ++instances;
}

@Controller()
class PipelineController {
  constructor(private readonly counter: PerRequestCounter) {}

  @MessagePattern('guarded')
  @UseGuards(AllowListGuard)
  guarded() {
    return SetVar.txn('passed', true);
  }

  @MessagePattern('intercepted')
  @UseInterceptors(ScoreBoostInterceptor)
  intercepted() {
    return [SetVar.txn('score', 1)];
  }

  @MessagePattern('piped')
  @UsePipes(ToStringPipe)
  piped(@Payload('ip') ip: string) {
    return SetVar.txn('seen', ip);
  }

  @MessagePattern('rpc-exception')
  @UseFilters(ErrorToActionsFilter)
  rpcException(): never {
    throw new RpcException('denied');
  }

  @MessagePattern('request-scoped')
  requestScoped(@Ctx() ctx: SpoeContext) {
    return SetVar.txn('instance', this.counter.id + ctx.getArguments().length * 0);
  }
}

describe('the Nest pipeline around SPOE handlers', () => {
  let agent: TestAgent;
  let client: SpoeClient;
  const hookCalls: string[] = [];
  beforeAll(async () => {
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    agent = await startAgent({ controllers: [PipelineController], providers: [PerRequestCounter] }, {}, (app) =>
      app.registerPreRequestHook((context, next) => {
        hookCalls.push(context.switchToRpc().getContext<SpoeContext>().getMessageName());
        return next().pipe(tap(() => hookCalls.push('after')));
      }),
    );
    client = await SpoeClient.connect({ port: agent.port });
  });
  afterAll(async () => {
    await client.close();
    await agent.close();
    jest.restoreAllMocks();
  });

  it('a guard that allows lets the handler answer', async () => {
    expect((await client.notify('guarded', { token: 'let-me-in' })).map((a) => a.name)).toEqual(['passed']);
  });

  it('a guard that denies makes the message fail (no actions), and the ACK still goes out', async () => {
    expect(await client.notify('guarded', { token: 'nope' })).toEqual([]);
  });

  it('an interceptor can add actions', async () => {
    expect((await client.notify('intercepted')).map((a) => a.name)).toEqual(['score', 'intercepted']);
  });

  it('pipes transform payload arguments', async () => {
    expect((await client.notify('piped', { ip: SpoeIp.parse('192.0.2.1') }))[0].value).toBe('ip:192.0.2.1');
  });

  it('an exception filter can turn an RpcException into actions', async () => {
    expect(await client.notify('rpc-exception')).toMatchObject([{ name: 'filtered', value: 'denied' }]);
  });

  it('request-scoped providers get a fresh instance per message', async () => {
    const first = (await client.notify('request-scoped'))[0].value as number;
    const second = (await client.notify('request-scoped'))[0].value as number;
    expect(second).toBeGreaterThan(first);
  });

  it('global pre-request hooks wrap each handler', async () => {
    hookCalls.length = 0;
    await client.notify('intercepted');
    expect(hookCalls).toEqual(['intercepted', 'after']);
  });
});

describe('handler registration', () => {
  @Controller()
  class First {
    @MessagePattern('same-name')
    a() {}
  }
  @Controller()
  class Second {
    @MessagePattern('same-name')
    b() {}
  }
  @Controller()
  class ObjectPattern {
    @MessagePattern({ cmd: 'not-a-name' })
    c() {}
  }
  @Controller()
  class BadDeadline {
    @MessagePattern('x', { deadline: -1 })
    d() {}
  }

  it.each([
    ['two @MessagePattern handlers for one message name', [First, Second], /two @MessagePattern handlers for SPOE message "same-name"/],
    ['a pattern that is not a message name', [ObjectPattern], /SPOE patterns are spoe-message names/],
    ['an invalid deadline', [BadDeadline], /extras.deadline must be a positive integer/],
  ])('%s fails the bootstrap', async (_, controllers, message) => {
    await expect(startAgent({ controllers })).rejects.toThrow(SpoeHandlerError);
    await expect(startAgent({ controllers })).rejects.toThrow(message);
  });
});

describe('hybrid app with SpoeModule', () => {
  @Injectable()
  class GreetingService {
    greet(): string {
      return 'hello from DI';
    }
  }
  @Controller()
  class HybridController {
    constructor(private readonly greeting: GreetingService) {}
    @MessagePattern('greet')
    greet() {
      return [SetVar.txn('greeting', this.greeting.greet())];
    }
  }
  @Module({ imports: [SpoeModule.forRoot({ host: '127.0.0.1', port: 0 })], controllers: [HybridController], providers: [GreetingService] })
  class HybridModule {}

  it('serves HTTP and SPOE from one app; global interceptors reach SPOE handlers with inheritAppConfig', async () => {
    const app = await NestFactory.create(HybridModule, { logger: false });
    app.useGlobalInterceptors(new ScoreBoostInterceptor());
    const server = app.get(SpoeServer);
    app.connectMicroservice({ strategy: server }, { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    const client = await SpoeClient.connect({ port: (server.address as AddressInfo).port });
    try {
      expect((await client.notify('greet')).map((a) => [a.name, a.value])).toEqual([
        ['greeting', 'hello from DI'],
        ['intercepted', true],
      ]);
      const http = await fetch(`${await app.getUrl()}/missing`);
      expect(http.status).toBe(404);
    } finally {
      await client.close();
      await app.close();
    }
  });

  it('SpoeModule.forRootAsync builds the server from injected configuration', async () => {
    @Module({ imports: [SpoeModule.forRootAsync({ useFactory: () => ({ host: '127.0.0.1', port: 0, maxFrameSize: 4096 }) })] })
    class AsyncModule {}
    const app = await NestFactory.create(AsyncModule, { logger: false });
    try {
      expect(app.get(SpoeServer).options.maxFrameSize).toBe(4096);
    } finally {
      await app.close();
    }
  });
});

describe('processing hooks (tracing integrations)', () => {
  it('wrap every handler run: start before, end after the result', async () => {
    const calls: string[] = [];
    @Controller()
    class HookedController {
      @MessagePattern('traced')
      traced() {
        calls.push('handler');
        return SetVar.txn('traced', true);
      }
    }
    const server = new SpoeServer({ host: '127.0.0.1', port: 0 });
    server.setOnProcessingStartHook((_, context, done) => {
      calls.push(`start ${(context as SpoeContext).getMessageName()}`);
      return done();
    });
    server.setOnProcessingEndHook(() => calls.push('end'));
    @Module({ controllers: [HookedController] })
    class HookedModule {}
    const app = await NestFactory.createMicroservice(HookedModule, { strategy: server, logger: false });
    await app.listen();
    const client = await SpoeClient.connect({ port: (server.address as AddressInfo).port });
    try {
      expect(await client.notify('traced')).toHaveLength(1);
      expect(calls).toEqual(['start traced', 'handler', 'end']);
    } finally {
      await client.close();
      await app.close();
    }
  });
});
