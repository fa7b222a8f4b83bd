import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SetVar, SpoeIp, SpoeValue, TypedData } from 'nestjs-spoe';
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

  /** Sets `sess.<var-prefix>.ip_score` (INT32 0–100, 100 when the address is blocked). */
  @MessagePattern('check-client-ip')
  checkClientIp(@Payload('ip') ip: SpoeValue | undefined): readonly SetVar[] {
    return scoreActions(this.reputation.check(toIp(ip)).score);
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

/** `src` arrives as IPV4 or IPV6; a STRING holding an address (e.g. from `req.hdr(x-real-ip)`) is accepted too. */
function toIp(value: SpoeValue | undefined): SpoeIp {
  if (value instanceof SpoeIp) return value;
  if (typeof value === 'string') return SpoeIp.parse(value.trim());
  throw new TypeError(`check-client-ip: argument "ip" must be an IP address, got ${value === undefined ? 'nothing' : String(value)}`);
}
