import type { ArgumentMetadata, CallHandler, CanActivate, NestInterceptor, PipeTransform, Type } from '@nestjs/common';
import { CUSTOM_ROUTE_ARGS_METADATA, RouteParamtypes } from '@nestjs/common/internal';
import { ApplicationConfig, MetadataScanner, ModulesContainer, NestContainer } from '@nestjs/core';
import {
  ContextUtils,
  ExecutionContextHost,
  FORBIDDEN_MESSAGE,
  GuardsContextCreator,
  InterceptorsContextCreator,
  ParamsTokenFactory,
  PipesContextCreator,
  STATIC_CONTEXT,
} from '@nestjs/core/internal';
import { RpcException } from '@nestjs/microservices';
import { PARAM_ARGS_METADATA } from '@nestjs/microservices/constants.js';
import { ExceptionFiltersContext } from '@nestjs/microservices/context/exception-filters-context.js';
import { DEFAULT_CALLBACK_METADATA } from '@nestjs/microservices/context/rpc-metadata-constants.js';
import { RpcParamtype } from '@nestjs/microservices/enums/rpc-paramtype.enum.js';
import type { RpcExceptionsHandler } from '@nestjs/microservices/exceptions/rpc-exceptions-handler.js';
import { ListenerMetadataExplorer } from '@nestjs/microservices/listener-metadata-explorer.js';
import { AsyncResource } from 'node:async_hooks';
import { from, isObservable, lastValueFrom, Observable, of, throwError } from 'rxjs';
import { catchError, mergeAll, mergeMap } from 'rxjs/operators';
import type { SpopId } from '../protocol/frame';
import type { SpoeMessage } from '../protocol/notify';
import { SpoeErrorFilter, SpoeMessageHandling, SpoeMessageInvoker, SpoePayload, toPayload } from './dispatcher';
import { rememberCause } from './handler-errors';
import { SpoeConnectionInfo, SpoeContext } from './spoe.context';

/*
 * Why nestjs-spoe runs its @MessagePattern handlers itself.
 *
 * Nest's RPC pipeline (RpcContextCreator + RpcProxy) is correct and general, and costs about 0.8 µs per call even for a
 * handler with no guard, pipe or interceptor: eight async functions and their promises. An SPOE agent answers every
 * request HAProxy serves, and that cost alone exceeded the whole budget of a message. So for each handler, once, at
 * listen time, this file resolves what Nest would resolve — with Nest's own context creators, the same metadata and
 * the same order: guards, then interceptors around pipes and the method, exception filters on any error — and runs it
 * synchronously as long as every step answers synchronously, switching to promises at the first step that does not.
 * Arguments are read from the message only when a parameter asks for them (`@Payload('ip')` decodes one argument).
 *
 * What is observably the same: which enhancers run, in which order, with which ExecutionContext and metadata, what the
 * method receives, and what reaches the ACK (values, Observables, errors through the filters). What differs: timing
 * (a synchronous value is not delayed to a microtask), and nothing else. Anything this file does not reproduce makes
 * the handler keep Nest's own pipeline: request-scoped controllers, pre-request hooks, and hybrid apps whose global
 * enhancers may or may not be inherited (see {@link HandlerPipelines.forServer}).
 */

/** What a handler's pipeline is built from: Nest's modules and the application config holding the global enhancers. */
export interface NestHandlerSource {
  readonly modules: ModulesContainer;
  readonly config: ApplicationConfig;
  /** True when the app also serves HTTP: its global enhancers reach microservices only with `inheritAppConfig`. */
  readonly hybrid: boolean;
}

/** A parameter decorator's metadata, as `@Payload()`, `@Ctx()` and custom decorators store it. */
interface ParamMetadata {
  readonly index: number;
  readonly data?: unknown;
  readonly pipes?: unknown[];
  readonly schema?: ArgumentMetadata['schema'];
  readonly factory?: (...args: unknown[]) => unknown;
}

interface ParamPlan {
  readonly index: number;
  /** RpcParamtype, or undefined for a custom decorator. */
  readonly type: RpcParamtype | undefined;
  readonly data: unknown;
  /** What each pipe receives (as PipesConsumer builds it). */
  readonly metadata: ArgumentMetadata;
  /** Global, class and method pipes, then the parameter's own. */
  readonly pipes: readonly PipeTransform[];
  readonly custom: ((...args: unknown[]) => unknown) | undefined;
}

/** A container that answers with the app's modules: all Nest's context creators read from it. */
class ModulesView extends NestContainer {
  constructor(
    private readonly appModules: ModulesContainer,
    config: ApplicationConfig,
  ) {
    super(config);
  }

  override getModules(): ModulesContainer {
    return this.appModules;
  }
}

/** Builds the pipelines of an app's @MessagePattern handlers (one factory per app). */
export class HandlerPipelines {
  private readonly guards: GuardsContextCreator;
  private readonly interceptors: InterceptorsContextCreator;
  private readonly pipes: PipesContextCreator;
  private readonly filters: ExceptionFiltersContext;
  private readonly explorer = new ListenerMetadataExplorer(new MetadataScanner());
  private readonly utils = new ContextUtils();
  private readonly tokens = new ParamsTokenFactory();

  constructor(private readonly source: NestHandlerSource) {
    const container = new ModulesView(source.modules, source.config);
    this.guards = new GuardsContextCreator(container, source.config);
    this.interceptors = new InterceptorsContextCreator(container, source.config);
    this.pipes = new PipesContextCreator(container, source.config);
    this.filters = new ExceptionFiltersContext(container, source.config);
  }

  /**
   * Why the handlers of a server cannot be run here, or undefined when they can. In a hybrid app Nest gives the
   * microservice the app's global enhancers only with `inheritAppConfig`, which is not visible from here: with global
   * enhancers or pre-request hooks present, keeping Nest's pipeline is the only way to be sure to run the same ones.
   */
  unsupportedReason(): string | undefined {
    const config = this.source.config;
    if (config.getGlobalPreRequestHooks().length > 0) return 'pre-request hooks are registered';
    const globals =
      config.getGlobalGuards().length +
      config.getGlobalInterceptors().length +
      config.getGlobalPipes().length +
      config.getGlobalFilters().length +
      config.getGlobalRequestGuards().length +
      config.getGlobalRequestInterceptors().length +
      config.getGlobalRequestPipes().length +
      config.getGlobalRequestFilters().length;
    if (this.source.hybrid && globals > 0)
      return 'a hybrid app has global enhancers that the microservice may not inherit';
    return undefined;
  }

  /**
   * The pipeline of the `@MessagePattern(pattern)` handler of `transportId`, or undefined when it must keep Nest's
   * own (request-scoped controller, or a handler this cannot find unambiguously).
   */
  compile(pattern: string, transportId: symbol): SpoeMessageHandling | undefined {
    const found = this.find(pattern, transportId);
    if (!found) return undefined;
    return new HandlerPipeline(this.plan(found.instance, found.methodKey, found.moduleKey));
  }

  private find(
    pattern: string,
    transportId: symbol,
  ): { instance: object; methodKey: string; moduleKey: string } | undefined {
    const matches: Array<{ instance: object; methodKey: string; moduleKey: string; isStatic: boolean }> = [];
    for (const [moduleKey, module] of this.source.modules) {
      for (const wrapper of module.controllers.values()) {
        const instance = wrapper.instance as object | undefined;
        if (!instance) continue;
        for (const definition of this.explorer.explore(instance)) {
          if (definition.isEventHandler) continue;
          // As ListenersController: a handler bound to another transport is not this server's.
          if (definition.transport !== undefined && (definition.transport as unknown) !== transportId) continue;
          if (!definition.patterns.includes(pattern)) continue;
          matches.push({
            instance,
            methodKey: definition.methodKey,
            moduleKey,
            isStatic: wrapper.isDependencyTreeStatic(),
          });
        }
      }
    }
    if (matches.length !== 1 || !matches[0].isStatic) return undefined;
    return matches[0];
  }

  /** What RpcContextCreator.create resolves for a static handler, resolved the same way. */
  private plan(instance: object, methodKey: string, moduleKey: string): PipelinePlan {
    const callback = (instance as Record<string, (...args: unknown[]) => unknown>)[methodKey];
    const metadata: Record<string, ParamMetadata> =
      this.utils.reflectCallbackMetadata<Record<string, ParamMetadata> | undefined>(
        instance,
        methodKey,
        PARAM_ARGS_METADATA,
      ) ?? DEFAULT_CALLBACK_METADATA;
    const keys = Object.keys(metadata);
    const paramtypes = this.utils.reflectCallbackParamtypes(instance, methodKey) as
      Array<Type<unknown> | undefined> | undefined;
    const contextFactory = this.utils.getContextFactory('rpc', instance, callback);
    const pipes = this.pipes.create(instance, callback, moduleKey, STATIC_CONTEXT);
    this.pipes.setModuleContext(moduleKey);
    const params = keys.map((key): ParamPlan => {
      const { index, data, pipes: own, schema, factory } = metadata[key];
      const paramPipes = this.pipes.createConcreteContext<unknown[], PipeTransform[]>(own ?? []);
      const custom = key.includes(CUSTOM_ROUTE_ARGS_METADATA);
      const type = custom ? undefined : (Number(this.utils.mapParamType(key)) as RpcParamtype);
      // RpcParamtype shares its numbers with RouteParamtypes (PAYLOAD is BODY): PipesConsumer maps them the same way.
      const token = custom ? 'custom' : this.tokens.exchangeEnumForString(type as number as RouteParamtypes);
      return {
        index,
        type,
        data,
        // Frozen and shared by every call: Nest builds one per call, which pipes only read.
        metadata: Object.freeze({
          metatype: paramtypes?.[index],
          type: token,
          data: data as string | undefined,
          schema,
        }),
        pipes: [...pipes, ...paramPipes],
        custom: custom ? this.utils.getCustomFactory(factory!, data, contextFactory) : undefined,
      };
    });
    return {
      instance,
      type: instance.constructor as Type<unknown>,
      callback,
      argsLength: this.utils.getArgumentsLength(keys, metadata),
      params,
      guards: this.guards.create(instance, callback, moduleKey, STATIC_CONTEXT),
      interceptors: this.interceptors.create(instance, callback, moduleKey, STATIC_CONTEXT),
      exceptions: this.filters.create(instance, callback as never, moduleKey, STATIC_CONTEXT),
    };
  }
}

interface PipelinePlan {
  readonly instance: object;
  readonly type: Type<unknown>;
  readonly callback: (...args: unknown[]) => unknown;
  readonly argsLength: number;
  readonly params: readonly ParamPlan[];
  readonly guards: readonly CanActivate[];
  readonly interceptors: readonly NestInterceptor[];
  readonly exceptions: RpcExceptionsHandler;
}

/** The arguments Nest would pass around — `[payload, context]` — built when something first needs them. */
class Call {
  private payloadObject: SpoePayload | undefined;
  private spoeContext: SpoeContext | undefined;
  private nestArgs: unknown[] | undefined;

  constructor(
    readonly message: SpoeMessage,
    private readonly streamId: SpopId,
    private readonly frameId: SpopId,
    private readonly connection: SpoeConnectionInfo,
  ) {}

  get payload(): SpoePayload {
    return (this.payloadObject ??= toPayload(this.message));
  }

  get context(): SpoeContext {
    return (this.spoeContext ??= new SpoeContext([this.message, this.streamId, this.frameId, this.connection]));
  }

  get args(): unknown[] {
    return (this.nestArgs ??= [this.payload, this.context]);
  }
}

/**
 * The ExecutionContext of guards and interceptors: Nest's own, reading the call's arguments when asked — an
 * interceptor that never looks at the payload does not make every argument of the message decoded.
 */
class SpoeExecutionContext extends ExecutionContextHost {
  constructor(
    private readonly call: Call,
    type: Type<unknown>,
    handler: (...args: unknown[]) => unknown,
  ) {
    super(NO_ARGS, type, handler);
    this.setType('rpc');
  }

  override getArgs<T extends unknown[] = unknown[]>(): T {
    return this.call.args as T;
  }

  override getArgByIndex<T = unknown>(index: number): T {
    return (index === 0 ? this.call.payload : index === 1 ? this.call.context : undefined) as T;
  }
}

const NO_ARGS: unknown[] = [];

// A payload with no such argument answers `payload[data]` from Object.prototype, as a plain object does.
const NO_ARGUMENT: Record<string, unknown> = {};

class HandlerPipeline implements SpoeMessageHandling {
  private readonly simpleArgs: boolean;
  /** The argument name of a handler whose only parameter is `@Payload(name)`, with no enhancer at all. */
  private readonly onlyArgument: string | undefined;
  readonly invoke: SpoeMessageInvoker;

  constructor(private readonly plan: PipelinePlan) {
    // Parameters read straight from the message, no pipe in between: the common case, kept free of promises.
    this.simpleArgs = plan.params.every((p) => p.pipes.length === 0 && p.custom === undefined);
    const [only] = plan.params;
    const bare =
      plan.guards.length === 0 &&
      plan.interceptors.length === 0 &&
      plan.params.length === 1 &&
      plan.argsLength === 1 &&
      only.custom === undefined;
    this.onlyArgument =
      bare && only.type === RpcParamtype.PAYLOAD && typeof only.data === 'string' && only.data !== ''
        ? only.data
        : undefined;
    this.invoke =
      this.onlyArgument === undefined
        ? this.invokeFull
        : only.pipes.length > 0
          ? this.invokeBarePiped
          : this.invokeBare;
  }

  /** `handler(@Payload('ip') ip)` and nothing around it: the shape of most SPOE handlers, called with no allocation. */
  private readonly invokeBare: SpoeMessageInvoker = (message, streamId, frameId, connection) => {
    let result: unknown;
    try {
      result = this.plan.callback.call(this.plan.instance, argument(message, this.onlyArgument!));
    } catch (error) {
      return this.handleError(error, new Call(message, streamId, frameId, connection));
    }
    return isThenable(result) ? settled(result) : result;
  };

  /**
   * `handler(@Payload('ip', SomePipe) ip)` with no guard or interceptor: called with nothing built but what the pipes
   * need. A function of its own, so that the bare one stays as small as it is (V8 inlines it whole), and without a
   * closure (V8 would allocate the function's context on every call).
   */
  private readonly invokeBarePiped: SpoeMessageInvoker = (message, streamId, frameId, connection) => {
    const plan = this.plan;
    let result: unknown;
    try {
      const value = this.applyPipes(plan.params[0], argument(message, this.onlyArgument!));
      if (isThenable(value)) return this.afterAsyncPipes(value);
      result = plan.callback.call(plan.instance, value);
    } catch (error) {
      return this.handleError(error, new Call(message, streamId, frameId, connection));
    }
    return isThenable(result) ? settled(result) : result;
  };

  /** The piped bare handler, called once its parameter's pipes (one of which returned a promise) are done. */
  private afterAsyncPipes(value: PromiseLike<unknown>): unknown {
    const { callback, instance } = this.plan;
    return Promise.resolve(value).then((v) => callback.call(instance, v));
  }

  private readonly invokeFull: SpoeMessageInvoker = (message, streamId, frameId, connection) => {
    const call = new Call(message, streamId, frameId, connection);
    try {
      const allowed = this.plan.guards.length === 0 ? true : this.canActivate(call);
      if (allowed instanceof Promise) return allowed.then((ok) => this.afterGuards(call, ok));
      const result = this.afterGuards(call, allowed);
      return isThenable(result) ? settled(result) : result;
    } catch (error) {
      return this.handleError(error, call);
    }
  };

  private afterGuards(call: Call, allowed: boolean): unknown {
    if (!allowed) throw new RpcException(FORBIDDEN_MESSAGE);
    if (this.plan.interceptors.length === 0) return this.handle(call);
    return this.intercepted(call);
  }

  /** Guards in order; true, false, or a Promise of either from the first guard that answers asynchronously. */
  private canActivate(call: Call): boolean | Promise<boolean> {
    const context = this.executionContext(call);
    const guards = this.plan.guards;
    for (let i = 0; i < guards.length; i++) {
      const result = guards[i].canActivate(context);
      if (typeof result === 'boolean') {
        if (!result) return false;
        continue;
      }
      return (async () => {
        if (!(await pickResult(result))) return false;
        for (let j = i + 1; j < guards.length; j++)
          if (!(await pickResult(guards[j].canActivate(context)))) return false;
        return true;
      })();
    }
    return true;
  }

  /** Pipes, then the method: its result, or a Promise of it when a pipe answered asynchronously. */
  private handle(call: Call): unknown {
    const { callback, instance } = this.plan;
    if (this.simpleArgs) return callback.apply(instance, this.simpleArguments(call));
    const args = new Array<unknown>(this.plan.argsLength);
    const pending: Array<Promise<void>> = [];
    for (const param of this.plan.params) {
      const value = this.applyPipes(param, this.extract(param, call));
      if (isThenable(value)) pending.push(Promise.resolve(value).then((v) => void (args[param.index] = v)));
      else args[param.index] = value;
    }
    if (pending.length === 0) return callback.apply(instance, args);
    return Promise.all(pending).then(() => callback.apply(instance, args));
  }

  private simpleArguments(call: Call): unknown[] {
    // No parameter metadata at all: Nest passes its own arguments, `(payload, context)`.
    if (this.plan.params.length === 0) return call.args;
    const args = new Array<unknown>(this.plan.argsLength);
    for (const param of this.plan.params) args[param.index] = this.extract(param, call);
    return args;
  }

  /** What RpcParamsFactory.exchangeKeyForValue (or a custom decorator's factory) returns for `[payload, context]`. */
  private extract(param: ParamPlan, call: Call): unknown {
    if (param.custom) return param.custom(...call.args);
    switch (param.type) {
      case RpcParamtype.PAYLOAD:
        if (!param.data) return call.payload;
        if (typeof param.data !== 'string') return call.payload[String(param.data)];
        return argument(call.message, param.data);
      case RpcParamtype.CONTEXT:
        return call.context;
      default:
        return null;
    }
  }

  /** PipesConsumer.apply: each pipe in order on the previous one's output, awaited only when it is a Promise. */
  private applyPipes(param: ParamPlan, value: unknown): unknown {
    const metadata = param.metadata;
    let result = value;
    for (let i = 0; i < param.pipes.length; i++) {
      if (isThenable(result)) {
        const rest = param.pipes.slice(i);
        return Promise.resolve(result).then(async (v) => {
          let out: unknown = v;
          for (const pipe of rest) out = await pipe.transform(out, metadata);
          return out;
        });
      }
      result = param.pipes[i].transform(result, metadata);
    }
    return result;
  }

  /** InterceptorsConsumer.intercept: each interceptor around the next, the method innermost, lazily subscribed. */
  private intercepted(call: Call): Observable<unknown> {
    const context = this.executionContext(call);
    const interceptors = this.plan.interceptors;
    // The chain is subscribed at once (by the dispatcher), so the first interceptor needs no defer() around it.
    const next = (i: number): Observable<unknown> => {
      if (i >= interceptors.length) return toObservable(this.handle(call));
      const handler: CallHandler = { handle: () => deferInScope(() => next(i + 1)) };
      const result = interceptors[i].intercept(context, handler);
      return isThenable(result) ? from(result).pipe(mergeAll()) : result;
    };
    return next(0);
  }

  /**
   * RpcProxy: errors of the method go through the exception filters here; those of its Promise or Observable when the
   * dispatcher, which alone follows them, hands them over: a handler that never settles then holds on to nothing of the
   * message once it is acknowledged at its deadline, where callbacks given here would keep it for as long as the
   * handler lives.
   */
  readonly filterError: SpoeErrorFilter = (error, message, streamId, frameId, connection) =>
    this.handleError(error, new Call(message, streamId, frameId, connection));

  private handleError(error: unknown, call: Call): Observable<unknown> {
    const host = new ExecutionContextHost(call.args);
    host.setType('rpc');
    return this.plan.exceptions.handle(error as Error, host).pipe(
      catchError((filtered: unknown) => {
        rememberCause(filtered, error);
        return throwError(() => filtered);
      }),
    );
  }

  private executionContext(call: Call): ExecutionContextHost {
    return new SpoeExecutionContext(call, this.plan.type, this.plan.callback);
  }
}

function argument(message: SpoeMessage, name: string): unknown {
  const index = message.indexOf(name);
  return index < 0 ? NO_ARGUMENT[name] : message.valueAt(index);
}

/** GuardsConsumer.pickResult. */
async function pickResult(result: boolean | Promise<boolean> | Observable<boolean>): Promise<boolean> {
  const value = await result;
  return isObservable(value) ? lastValueFrom(value) : value;
}

/** InterceptorsConsumer.transformDeferred: the method's value, Promise or Observable as an Observable. */
function toObservable(value: unknown): Observable<unknown> {
  if (isObservable(value)) return value;
  if (isThenable(value)) return from(value).pipe(mergeMap((v: unknown) => (isObservable(v) ? v : of(v))));
  return of(value);
}

/** Any thenable is followed, as `await` in Nest's RpcProxy follows it: what leaves the pipeline is a native Promise. */
function settled(result: PromiseLike<unknown>): Promise<unknown> {
  return result instanceof Promise ? result : Promise.resolve(result);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

/**
 * `defer(fn)` run in the async context of this call, as Nest binds `next.handle()`: what runs downstream keeps the
 * AsyncLocalStorage stores of the interceptor that called it, whenever it is subscribed. One Observable, not two.
 */
function deferInScope(fn: () => Observable<unknown>): Observable<unknown> {
  const resource = new AsyncResource('nestjs-spoe-handler');
  return new Observable((subscriber) => resource.runInAsyncScope(() => fn().subscribe(subscriber)));
}
