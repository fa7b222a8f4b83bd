/**
 * The agent of test/transport/abuse.e2e-spec.ts, run in a process of its own (forkAgent) so that its heap and handles
 * are measured apart from Jest's. Messages:
 * - `echo` (arg `v`): sets `txn.echo` to `v`: the valid traffic, whose every ACK is checked.
 * - `blob` (arg `b`, a binary whose first 4 bytes are a sequence number): sets `txn.len` to its length and `txn.seq`
 *   to that number: the max-size frames.
 * - `never-promise`, `never-observable`: handlers that never settle, deadline {@link NEVER_DEADLINE_MS}. What they
 *   wait for holds on to them forever, as a request stuck on a dead backend would: the resolve function of the
 *   Promise, the subscriber of the Observable.
 */
import 'reflect-metadata';
import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeErrorVariable, VarScope } from 'nestjs-spoe';
import { Observable } from 'rxjs';
import { serveForked } from '../support/forked-agent';

/** The deadline of the handlers that never settle: long enough for many NOTIFY to be answered meanwhile. */
export const NEVER_DEADLINE_MS = 500;

/** Set in every ACK of a NOTIFY whose handler failed (1) or passed its deadline (2). */
export const ERROR_VARIABLE: SpoeErrorVariable = { scope: VarScope.Transaction, name: 'spoe_error' };

/** What the handlers that never settle wait for, and what holds on to them. */
const stuck: unknown[] = [];
const calls = { echo: 0, blob: 0, never: 0 };

@Controller()
export class AbuseController {
  @MessagePattern('echo')
  echo(@Payload('v') v: number) {
    calls.echo++;
    return SetVar.txn('echo', v);
  }

  @MessagePattern('blob')
  blob(@Payload('b') b: Buffer) {
    calls.blob++;
    return [SetVar.txn('len', b.length), SetVar.txn('seq', b.readUInt32BE(0))];
  }

  @MessagePattern('never-promise', { deadline: NEVER_DEADLINE_MS })
  neverPromise() {
    calls.never++;
    return new Promise((resolve) => stuck.push(resolve));
  }

  @MessagePattern('never-observable', { deadline: NEVER_DEADLINE_MS })
  neverObservable() {
    calls.never++;
    return new Observable((subscriber) => void stuck.push(subscriber));
  }
}

if (require.main === module) {
  void serveForked({ controllers: [AbuseController] }, { errorVariable: ERROR_VARIABLE }, () => ({
    ...calls,
    stuck: stuck.length,
  }));
}
