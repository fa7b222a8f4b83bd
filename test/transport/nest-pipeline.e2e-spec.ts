import {
  ArgumentMetadata,
  ArgumentsHost,
  CallHandler,
  CanActivate,
  Catch,
  Controller,
  createParamDecorator,
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
import { SetVar, SpoeContext, SpoeHandlerError, SpoeIp, SpoeModule, SpoeServer, VarScope } from 'nestjs-spoe';
import { SpoeClient } from 'nestjs-spoe/testing';
import { AddressInfo } from 'node:net';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Observable, of, throwError } from 'rxjs';
import { map, tap } from 'rxjs/operators';
import { PIPELINES, startAgent, TestAgent } from '../support/agent';

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

@Injectable()
class AsyncAllowGuard implements CanActivate {
  async canActivate(context: ExecutionContext): Promise<boolean> {
    await new Promise((resolve) => setImmediate(resolve));
    return context.switchToRpc().getData<Record<string, unknown>>().token === 'let-me-in';
  }
}

@Injectable()
class ObservableDenyGuard implements CanActivate {
  canActivate(): Observable<boolean> {
    return of(true, false);
  }
}

/** What the guard saw of its ExecutionContext. */
const seenByGuard: string[] = [];
@Injectable()
class RecordingGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const rpc = context.switchToRpc();
    seenByGuard.push(
      `${context.getType()} ${context.getClass().name}.${context.getHandler().name} ${rpc.getContext<SpoeContext>().getMessageName()} ${JSON.stringify(rpc.getData())}`,
    );
    return true;
  }
}

@Injectable()
class AsyncUpperPipe implements PipeTransform {
  async transform(value: unknown): Promise<string> {
    await new Promise((resolve) => setImmediate(resolve));
    return String(value).toUpperCase();
  }
}

const pipeMetadata: ArgumentMetadata[] = [];
@Injectable()
class MetadataPipe implements PipeTransform {
  transform(value: unknown, metadata: ArgumentMetadata): unknown {
    pipeMetadata.push(metadata);
    return value;
  }
}

@Injectable()
class ShortCircuitInterceptor implements NestInterceptor {
  intercept(): Observable<unknown> {
    return of(SetVar.txn('cached', true));
  }
}

@Injectable()
class AsyncInterceptor implements NestInterceptor {
  async intercept(_: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    await new Promise((resolve) => setImmediate(resolve));
    return next.handle().pipe(map((actions: SetVar[]) => [...actions, SetVar.txn('async_intercepted', true)]));
  }
}

const storage = new AsyncLocalStorage<string>();
@Injectable()
class StorageInterceptor implements NestInterceptor {
  intercept(_: ExecutionContext, next: CallHandler): Observable<unknown> {
    return storage.run('from-interceptor', () => next.handle());
  }
}

const MessageName = createParamDecorator(
  (prefix: string, context: ExecutionContext) =>
    `${prefix}${context.switchToRpc().getContext<SpoeContext>().getMessageName()}`,
);

@Controller()
class PipelineController {
  @MessagePattern('guarded')
  @UseGuards(AllowListGuard)
  guarded() {
    return SetVar.txn('passed', true);
  }

  @MessagePattern('async-guarded')
  @UseGuards(RecordingGuard, AsyncAllowGuard)
  asyncGuarded() {
    return SetVar.txn('passed', true);
  }

  @MessagePattern('observable-guarded')
  @UseGuards(ObservableDenyGuard)
  observableGuarded() {
    return SetVar.txn('passed', true);
  }

  @MessagePattern('intercepted')
  @UseInterceptors(ScoreBoostInterceptor)
  intercepted() {
    return [SetVar.txn('score', 1)];
  }

  @MessagePattern('short-circuit')
  @UseInterceptors(ShortCircuitInterceptor)
  shortCircuit() {
    throw new Error('must not run');
  }

  @MessagePattern('async-intercepted')
  @UseInterceptors(AsyncInterceptor, ScoreBoostInterceptor)
  async asyncIntercepted() {
    return [SetVar.txn('score', 2)];
  }

  @MessagePattern('storage')
  @UseInterceptors(StorageInterceptor)
  fromStorage() {
    return SetVar.txn('store', storage.getStore() ?? 'none');
  }

  @MessagePattern('piped')
  @UsePipes(ToStringPipe)
  piped(@Payload('ip') ip: string) {
    return SetVar.txn('seen', ip);
  }

  @MessagePattern('async-piped')
  asyncPiped(@Payload('name', AsyncUpperPipe) name: string, @Payload('n') n: number) {
    return [SetVar.txn('name', name), SetVar.txn('n', n)];
  }

  @MessagePattern('pipe-metadata')
  @UsePipes(MetadataPipe)
  pipeMetadata(
    @Payload('ip') ip: SpoeIp,
    @Payload() payload: Record<string, unknown>,
    @Ctx() ctx: SpoeContext,
    @MessageName('m:') name: string,
  ) {
    return SetVar.txn(
      'ok',
      ip instanceof SpoeIp &&
        payload.ip === ip &&
        ctx.getMessageName() === 'pipe-metadata' &&
        name === 'm:pipe-metadata',
    );
  }

  @MessagePattern('arguments')
  argumentsOf(
    @Payload('ip') ip: SpoeIp,
    @Payload('absent') absent: unknown,
    @Payload('toString') inherited: unknown,
    @Payload() payload: Record<string, unknown>,
    @Ctx() ctx: SpoeContext,
  ) {
    return [
      SetVar.txn('ip', ip.toString()),
      SetVar.txn('absent', String(absent)),
      SetVar.txn('inherited', typeof inherited),
      SetVar.txn('keys', Object.keys(payload).join(',')),
      SetVar.txn('first', String(payload.dup)),
      SetVar.txn('count', ctx.getArguments().length),
    ];
  }

  @MessagePattern('undecorated')
  undecorated(payload: Record<string, unknown>, second: unknown) {
    return [SetVar.txn('a', String(payload.a)), SetVar.txn('second', typeof second)];
  }

  @MessagePattern('promise')
  async promise(@Payload('a') a: string) {
    await new Promise((resolve) => setImmediate(resolve));
    return SetVar.txn('a', a);
  }

  @MessagePattern('thenable')
  thenable(): PromiseLike<SetVar> {
    return { then: (resolve) => Promise.resolve(SetVar.txn('then', 1)).then(resolve) } as PromiseLike<SetVar>;
  }

  @MessagePattern('observable')
  observable() {
    return of(SetVar.txn('one', 1), [SetVar.txn('two', 2)]);
  }

  @MessagePattern('throws')
  throws(): never {
    throw new Error('boom');
  }

  @MessagePattern('rejects')
  async rejects(): Promise<never> {
    throw new Error('boom');
  }

  @MessagePattern('not-actions')
  notActions() {
    return 42;
  }

  @MessagePattern('rpc-exception')
  @UseFilters(ErrorToActionsFilter)
  rpcException(): never {
    throw new RpcException('denied');
  }

  @MessagePattern('filtered-rejection')
  @UseFilters(ErrorToActionsFilter)
  async filteredRejection(): Promise<never> {
    throw new RpcException('later');
  }

  @MessagePattern('filtered-observable')
  @UseFilters(ErrorToActionsFilter)
  filteredObservable() {
    return throwError(() => new RpcException('in stream'));
  }

  @MessagePattern('filtered-guard')
  @UseFilters(ErrorToActionsFilter)
  @UseGuards(ObservableDenyGuard)
  filteredGuard() {
    return SetVar.txn('passed', true);
  }
}

@Controller()
class RequestScopedController {
  constructor(private readonly counter: PerRequestCounter) {}

  @MessagePattern('request-scoped')
  requestScoped(@Ctx() ctx: SpoeContext) {
    return SetVar.txn('instance', this.counter.id + ctx.getArguments().length * 0);
  }
}

const summary = (actions: Array<{ name: string; value?: unknown }>): Array<[string, unknown]> =>
  actions.map((a) => [a.name, a.value]);

describe.each(PIPELINES)('the Nest pipeline around SPOE handlers (%s pipeline)', (pipeline) => {
  let agent: TestAgent;
  let client: SpoeClient;
  beforeAll(async () => {
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    agent = await startAgent(
      { controllers: [PipelineController, RequestScopedController], providers: [PerRequestCounter] },
      { errorVariable: { scope: VarScope.Transaction, name: 'error' } },
      { pipeline },
    );
    client = await SpoeClient.connect({ port: agent.port });
  });
  afterAll(async () => {
    await client.close();
    await agent.close();
    jest.restoreAllMocks();
  });

  it('runs the handlers through the pipeline it says', () => {
    expect(agent.server.pipelineOf('guarded')).toBe(pipeline);
    expect(agent.server.pipelineOf('request-scoped')).toBe('nest');
  });

  it('a guard that allows lets the handler answer', async () => {
    expect((await client.notify('guarded', { token: 'let-me-in' })).map((a) => a.name)).toEqual(['passed']);
  });

  it('a guard that denies makes the message fail, and the ACK still goes out', async () => {
    expect(summary(await client.notify('guarded', { token: 'nope' }))).toEqual([['error', 1]]);
  });

  it('guards run in order with the RPC ExecutionContext; an asynchronous guard is awaited', async () => {
    seenByGuard.length = 0;
    expect(summary(await client.notify('async-guarded', { token: 'let-me-in' }))).toEqual([['passed', true]]);
    expect(summary(await client.notify('async-guarded', { token: 'nope' }))).toEqual([['error', 1]]);
    expect(seenByGuard).toEqual([
      'rpc PipelineController.asyncGuarded async-guarded {"token":"let-me-in"}',
      'rpc PipelineController.asyncGuarded async-guarded {"token":"nope"}',
    ]);
  });

  it('a guard answering with an Observable is judged by its last value', async () => {
    expect(summary(await client.notify('observable-guarded'))).toEqual([['error', 1]]);
  });

  it('an interceptor can add actions', async () => {
    expect((await client.notify('intercepted')).map((a) => a.name)).toEqual(['score', 'intercepted']);
  });

  it('an interceptor can answer without calling the handler', async () => {
    expect(summary(await client.notify('short-circuit'))).toEqual([['cached', true]]);
  });

  it('interceptors nest in order, asynchronous ones included', async () => {
    expect(summary(await client.notify('async-intercepted'))).toEqual([
      ['score', 2],
      ['intercepted', true],
      ['async_intercepted', true],
    ]);
  });

  it('the handler runs in the async context its interceptor gave it', async () => {
    expect(summary(await client.notify('storage'))).toEqual([['store', 'from-interceptor']]);
  });

  it('pipes transform payload arguments', async () => {
    expect((await client.notify('piped', { ip: SpoeIp.parse('192.0.2.1') }))[0].value).toBe('ip:192.0.2.1');
  });

  it('an asynchronous parameter pipe is awaited; other parameters are unaffected', async () => {
    expect(summary(await client.notify('async-piped', { name: 'abc', n: 7 }))).toEqual([
      ['name', 'ABC'],
      ['n', 7],
    ]);
  });

  it('pipes receive the metadata Nest gives them; @Payload(), @Ctx() and custom decorators get their values', async () => {
    pipeMetadata.length = 0;
    expect(summary(await client.notify('pipe-metadata', { ip: SpoeIp.parse('192.0.2.1') }))).toEqual([['ok', true]]);
    // Nest visits parameters in the order their decorators ran: last parameter first.
    expect(
      pipeMetadata.map(({ type, data, metatype }) => ({
        type,
        data,
        metatype: (metatype as { name?: string } | undefined)?.name,
      })),
    ).toEqual([
      { type: 'custom', data: 'm:', metatype: 'String' },
      { type: 'custom', data: undefined, metatype: 'SpoeContext' },
      { type: 'body', data: undefined, metatype: 'Object' },
      { type: 'body', data: 'ip', metatype: 'SpoeIp' },
    ]);
  });

  it('@Payload(name) reads like a property of the payload: first of repeated names, undefined when absent', async () => {
    const actions = await client.notify('arguments', [
      ['ip', SpoeIp.parse('2001:db8::1')],
      ['dup', 'first'],
      ['dup', 'second'],
    ]);
    expect(summary(actions)).toEqual([
      ['ip', '2001:db8::1'],
      ['absent', 'undefined'],
      ['inherited', 'function'],
      ['keys', 'ip,dup'],
      ['first', 'first'],
      ['count', 3],
    ]);
  });

  it('a handler without parameter decorators gets the payload, as Nest gives it', async () => {
    expect(summary(await client.notify('undecorated', { a: 'x' }))).toEqual([
      ['a', 'x'],
      ['second', 'undefined'],
    ]);
  });

  it('Promises and Observables are followed to their actions', async () => {
    expect(summary(await client.notify('promise', { a: 'later' }))).toEqual([['a', 'later']]);
    expect(summary(await client.notify('thenable'))).toEqual([['then', 1]]);
    expect(summary(await client.notify('observable'))).toEqual([
      ['one', 1],
      ['two', 2],
    ]);
  });

  it('a throw, a rejection or a non-action result fails the message', async () => {
    for (const name of ['throws', 'rejects', 'not-actions'])
      expect(summary(await client.notify(name))).toEqual([['error', 1]]);
  });

  it('an exception filter can turn an RpcException into actions, thrown, rejected, in a stream or from a guard', async () => {
    expect(await client.notify('rpc-exception')).toMatchObject([{ name: 'filtered', value: 'denied' }]);
    expect(await client.notify('filtered-rejection')).toMatchObject([{ name: 'filtered', value: 'later' }]);
    expect(await client.notify('filtered-observable')).toMatchObject([{ name: 'filtered', value: 'in stream' }]);
    expect(await client.notify('filtered-guard')).toMatchObject([{ name: 'filtered', value: 'Forbidden resource' }]);
  });

  it('several messages in one NOTIFY are answered in message order', async () => {
    const actions = await client.notifyMessages([
      { name: 'promise', args: { a: 'first' } },
      { name: 'intercepted' },
      { name: 'guarded', args: { token: 'let-me-in' } },
    ]);
    expect(actions.map((a) => a.name)).toEqual(['a', 'score', 'intercepted', 'passed']);
  });

  it('request-scoped providers get a fresh instance per message', async () => {
    const first = (await client.notify('request-scoped'))[0].value as number;
    const second = (await client.notify('request-scoped'))[0].value as number;
    expect(second).toBeGreaterThan(first);
  });
});

describe.each(PIPELINES)('global enhancers of a microservice (%s pipeline)', (pipeline) => {
  @Controller()
  class GlobalController {
    @MessagePattern('global')
    global(@Payload('ip') ip: string) {
      return [SetVar.txn('seen', ip)];
    }

    @MessagePattern('global-throws')
    globalThrows(): never {
      throw new RpcException('global');
    }
  }

  it('apply to every handler, in the order Nest applies them', async () => {
    const agent = await startAgent(
      { controllers: [GlobalController] },
      {},
      {
        configure: (app) => {
          app.useGlobalPipes(new ToStringPipe());
          app.useGlobalInterceptors(new ScoreBoostInterceptor());
          app.useGlobalFilters(new ErrorToActionsFilter());
        },
        pipeline,
      },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect(agent.server.pipelineOf('global')).toBe(pipeline);
      expect(summary(await client.notify('global', { ip: SpoeIp.parse('192.0.2.9') }))).toEqual([
        ['seen', 'ip:192.0.2.9'],
        ['intercepted', true],
      ]);
      expect(summary(await client.notify('global-throws'))).toEqual([['filtered', 'global']]);
    } finally {
      await client.close();
      await agent.close();
    }
  });
});

describe.each(PIPELINES)('enhancers registered too late (%s pipeline)', (pipeline) => {
  @Controller()
  class LateController {
    @MessagePattern('late')
    late(@Payload('ip') ip: unknown) {
      return [SetVar.txn('seen', String(ip))];
    }
  }
  @Module({ imports: pipeline === 'nestjs-spoe' ? [SpoeModule] : [], controllers: [LateController] })
  class LateModule {}

  it('a global pipe added after the handlers were registered is not applied, as Nest does not apply it', async () => {
    const agent = await startAgent(
      LateModule,
      {},
      {
        configure: async (app) => {
          await app.init();
          app.useGlobalPipes(new ToStringPipe());
        },
      },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect(agent.server.pipelineOf('late')).toBe(pipeline);
      expect(summary(await client.notify('late', { ip: SpoeIp.parse('192.0.2.9') }))).toEqual([['seen', '192.0.2.9']]);
    } finally {
      await client.close();
      await agent.close();
    }
  });
});

describe('global pre-request hooks', () => {
  it("wrap each handler (such handlers keep Nest's pipeline)", async () => {
    const hookCalls: string[] = [];
    const agent = await startAgent(
      { controllers: [PipelineController], providers: [PerRequestCounter] },
      {},
      {
        configure: (app) =>
          app.registerPreRequestHook((context, next) => {
            hookCalls.push(context.switchToRpc().getContext<SpoeContext>().getMessageName());
            return next().pipe(tap(() => hookCalls.push('after')));
          }),
      },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect(agent.server.pipelineOf('intercepted')).toBe('nest');
      await client.notify('intercepted');
      expect(hookCalls).toEqual(['intercepted', 'after']);
    } finally {
      await client.close();
      await agent.close();
    }
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
    [
      'two @MessagePattern handlers for one message name',
      [First, Second],
      /two @MessagePattern handlers for SPOE message "same-name"/,
    ],
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
  @Module({
    imports: [SpoeModule.forRoot({ host: '127.0.0.1', port: 0 })],
    controllers: [HybridController],
    providers: [GreetingService],
  })
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
    @Module({
      imports: [SpoeModule.forRootAsync({ useFactory: () => ({ host: '127.0.0.1', port: 0, maxFrameSize: 4096 }) })],
    })
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
    @Module({ controllers: [HookedController] })
    class HookedModule {}
    const agent = await startAgent(
      HookedModule,
      {},
      {
        configure: (_app, server) => {
          server.setOnProcessingStartHook((_, context, done) => {
            calls.push(`start ${(context as SpoeContext).getMessageName()}`);
            return done();
          });
          server.setOnProcessingEndHook(() => calls.push('end'));
        },
      },
    );
    const client = await SpoeClient.connect({ port: agent.port });
    try {
      expect(await client.notify('traced')).toHaveLength(1);
      expect(calls).toEqual(['start traced', 'handler', 'end']);
    } finally {
      await client.close();
      await agent.close();
    }
  });
});
