import { Controller, Logger } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeContext, SpoeDataType, TypedData, UnsetVar } from 'nestjs-spoe';
import type { SpoePayload } from 'nestjs-spoe';
import { from, Observable } from 'rxjs';

@Controller()
export class HandlersController {
  private readonly log = new Logger('Handlers');

  // The whole payload: arguments by name, typed values (see the table above).
  @MessagePattern('inspect-request')
  inspect(@Payload() args: SpoePayload, @Ctx() ctx: SpoeContext) {
    const ua = ctx.getArguments().find((a) => a.name === 'ua');
    const rawUa = ua?.type === SpoeDataType.String ? ua.bytes : undefined; // the bytes as HAProxy sent them
    return [
      SetVar.txn('path_len', typeof args.path === 'string' ? args.path.length : 0),
      SetVar.txn('ua_bytes', rawUa?.length ?? 0),
      SetVar.txn('big', TypedData.uint64(2n ** 63n)), // an explicit wire type
      UnsetVar.txn('stale_flag'),
    ];
  }

  // An Observable: every emission is collected, in order, into the one ACK.
  @MessagePattern('classify')
  classify(): Observable<SetVar | SetVar[]> {
    return from([SetVar.txn('class', 'bot'), [SetVar.txn('confidence', 87)]]);
  }

  // A deadline of its own (default: handlerDeadlineMs). Past it, HAProxy gets the ACK anyway.
  @MessagePattern('slow-lookup', { deadline: 50 })
  async slowLookup() {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return SetVar.txn('never_sent', true);
  }

  // Fire-and-forget: runs for every matching message, never delays the ACK, adds no actions.
  @EventPattern('check-client-ip')
  audit(@Payload('ip') ip: unknown) {
    this.log.debug(`saw ${String(ip)}`);
  }
}
