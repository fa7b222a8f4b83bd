import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  Injectable,
  Logger,
  UnauthorizedException,
} from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { HttpAdapterHost } from '@nestjs/core';
import { SpoeIp } from 'nestjs-spoe';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AgentConfig, AgentSettings } from '../config/agent.config';
import { Cidr } from '../reputation/cidr';

/** The challenge of every 401 (RFC 6750 §3); a refused token adds `error="invalid_token"` to it. */
const REALM = 'Bearer realm="nestjs-spoe admin"';

/**
 * Who may call the admin API. With ADMIN_TOKEN, whoever sends it as `Authorization: Bearer <token>`, from anywhere.
 * Without it, the clients of this machine only: the connection's own address (never a forwarded one) is on loopback,
 * and so is the name the request is addressed to (its Host header).
 *
 * Bound on the admin controller (`@UseGuards`), not globally: a global guard would make nestjs-spoe run the SPOE
 * handlers through Nest's slower generic pipeline.
 */
@Injectable()
export class AdminAccessGuard implements CanActivate {
  private readonly token: AdminToken | undefined;

  constructor(
    config: ConfigService<AgentSettings, true>,
    private readonly adapterHost: HttpAdapterHost,
  ) {
    const { adminToken } = config.get('agent', { infer: true });
    this.token = adminToken === undefined ? undefined : new AdminToken(adminToken);
  }

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const request = http.getRequest<IncomingMessage>();
    if (this.token === undefined) {
      if (!isLoopbackAddress(request.socket.remoteAddress))
        throw new ForbiddenException(
          'ADMIN_TOKEN is not set: the admin API answers only clients on loopback. Set ADMIN_TOKEN on the agent and ' +
            'send it as "Authorization: Bearer <token>" to call it from elsewhere',
        );
      // DNS rebinding: a web page whose name the attacker then resolves to 127.0.0.1 calls the API from a browser on
      // this machine, its "same origin" as far as the browser knows. The browser's Host header still names the page.
      if (!isLoopbackHost(request.headers.host))
        throw new ForbiddenException(
          'ADMIN_TOKEN is not set: the admin API answers only requests addressed to localhost, 127.0.0.1 or [::1] ' +
            '(Host). Set ADMIN_TOKEN to call it by another name',
        );
      return true;
    }
    const presented = bearerToken(request.headers.authorization);
    if (presented !== undefined && this.token.matches(presented)) return true;
    // A wrong token is a 401 too, not a 403: RFC 6750 §3.1 answers an invalid token with 401 and error="invalid_token",
    // and keeps 403 (insufficient_scope) for a valid token that lacks a privilege — which the one token, having them
    // all, never does. A request without credentials, or with another scheme, gets the challenge with no error code.
    const challenge = presented === undefined ? REALM : `${REALM}, error="invalid_token"`;
    this.adapterHost.httpAdapter.setHeader(http.getResponse(), 'WWW-Authenticate', challenge);
    throw new UnauthorizedException(
      presented === undefined
        ? 'the admin API requires "Authorization: Bearer <ADMIN_TOKEN>"'
        : 'the bearer token is not the ADMIN_TOKEN of this agent',
    );
  }
}

/** What the agent says at startup when ADMIN_TOKEN is not set; nothing when it is. */
export function warnOfOpenAdminApi(config: AgentConfig, log: Logger): void {
  if (config.adminToken === undefined)
    log.warn('ADMIN_TOKEN is not set: the admin API answers only on loopback (set it to call the API from elsewhere)');
}

/** The admin token, kept as its SHA-256 digest. */
export class AdminToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = sha256(token);
  }

  /**
   * Whether `presented` is the token, in constant time: both sides are hashed first, so that timingSafeEqual compares
   * two buffers of the same length and the time taken tells neither the token's length nor how much of it matched.
   */
  matches(presented: string): boolean {
    return timingSafeEqual(sha256(presented), this.digest);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 9110 §11.1); undefined for no
 * header, another scheme, or no token.
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : /^Bearer +(\S+)$/i.exec(authorization.trim())?.[1];
}

const LOOPBACK = [Cidr.parse('127.0.0.0/8'), Cidr.parse('::1')];

/** Whether a socket's remote address is on loopback: 127.0.0.0/8, ::1, or 127.x as an IPv4-mapped IPv6 address. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false; // a socket already closed
  let ip: SpoeIp;
  try {
    ip = SpoeIp.parse(address);
  } catch {
    return false; // a scoped IPv6 address ("fe80::1%eth0") is not on loopback either
  }
  return LOOPBACK.some((network) => network.contains(ip));
}

/**
 * Whether a Host header names loopback: `localhost` or a loopback address, with any port. A request without one is not
 * from a browser (browsers always send it), which is all this check is about.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return true;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::\d*)?$/.exec(host);
  if (!match) return false;
  const name = (match[1] ?? match[2]).toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || isLoopbackAddress(name);
}
