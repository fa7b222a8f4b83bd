import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { ParseSpoeIpPipe, SetVar, SpoeIp, TypedData } from 'nestjs-spoe';
import { ReputationService } from './reputation.service';

/**
 * The SPOE side of the agent. HAProxy configuration:
 *
 *     spoe-message check-client-ip
 *         args ip=src
 *         event on-frontend-http-request
 */
@Controller()
export class ReputationController {
  constructor(private readonly reputation: ReputationService) {}

  /**
   * Sets `sess.<var-prefix>.ip_score` (INT32 0–100, 100 when the address is blocked). `ip` is IPV4 or IPV6 (`src`), or
   * a STRING holding an address (`req.hdr(x-real-ip)`); anything else fails the message (`txn.<prefix>.agent_error`).
   */
  @MessagePattern('check-client-ip')
  checkClientIp(@Payload('ip', ParseSpoeIpPipe) ip: SpoeIp): readonly SetVar[] {
    return scoreActions(this.reputation.score(ip));
  }
}

// Actions are immutable and a score takes few values: build each answer once, not once per NOTIFY.
const actionsByScore = new Map<number, readonly SetVar[]>();

function scoreActions(score: number): readonly SetVar[] {
  let actions = actionsByScore.get(score);
  if (!actions) {
    actions = Object.freeze([SetVar.sess('ip_score', TypedData.int32(score))]);
    actionsByScore.set(score, actions);
  }
  return actions;
}
