import { ArgumentMetadata, Injectable, Optional, PipeTransform } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import { SpoeIp } from '../protocol/ip';
import type { SpoeValue } from '../protocol/typed-data';

/** Options of {@link ParseSpoeIpPipe}. */
export interface ParseSpoeIpPipeOptions {
  /** A missing argument (undefined) passes as undefined instead of failing the message. Default false. */
  readonly optional?: boolean;
  /**
   * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack `bind` reports) become the IPv4 they carry. Default
   * true.
   */
  readonly unmap?: boolean;
  /** Builds the error thrown for a value that is not an address. Default: an RpcException with the message. */
  readonly exceptionFactory?: (message: string) => unknown;
}

/**
 * An SPOE argument as an {@link SpoeIp}: an IPV4 or IPV6 value as HAProxy sent it (`args ip=src`), or a STRING holding
 * an address (`args ip=req.hdr(x-real-ip)`). Anything else fails the message, as any pipe error does.
 *
 * ```ts
 * @MessagePattern('check-client-ip')
 * check(@Payload('ip', ParseSpoeIpPipe) ip: SpoeIp) { … }
 * ```
 */
@Injectable()
export class ParseSpoeIpPipe implements PipeTransform<SpoeValue | undefined, SpoeIp | undefined> {
  private readonly optional: boolean;
  private readonly unmap: boolean;
  private readonly exceptionFactory: (message: string) => unknown;

  constructor(@Optional() options: ParseSpoeIpPipeOptions = {}) {
    this.optional = options.optional ?? false;
    this.unmap = options.unmap ?? true;
    this.exceptionFactory = options.exceptionFactory ?? ((message) => new RpcException(message));
  }

  transform(value: SpoeValue | undefined, metadata?: ArgumentMetadata): SpoeIp | undefined {
    if (value === undefined && this.optional) return undefined;
    const ip = value instanceof SpoeIp ? value : typeof value === 'string' ? parse(value) : undefined;
    if (!ip)
      throw this.exceptionFactory(
        `argument ${metadata?.data ? `"${metadata.data}" ` : ''}must be an IP address, got ${describe(value)}`,
      );
    return this.unmap ? ip.unmapped() : ip;
  }
}

function parse(text: string): SpoeIp | undefined {
  try {
    return SpoeIp.parse(text.trim());
  } catch {
    return undefined;
  }
}

function describe(value: SpoeValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  if (Buffer.isBuffer(value)) return `${value.length} bytes of BINARY`;
  return `${typeof value} ${String(value)}`;
}
