import { ArgumentsHost, Catch, ExceptionFilter, ServiceUnavailableException } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { BlocklistUnavailableError } from '../reputation/blocklist.store';

/** A store that cannot reach its blocklist (Redis away) is a 503 naming the cause: the client may retry. */
@Catch(BlocklistUnavailableError)
export class BlocklistUnavailableFilter implements ExceptionFilter<BlocklistUnavailableError> {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(error: BlocklistUnavailableError, host: ArgumentsHost): void {
    const exception = new ServiceUnavailableException(`the blocklist store is unavailable: ${error.message}`, {
      cause: error,
    });
    this.adapterHost.httpAdapter.reply(
      host.switchToHttp().getResponse(),
      exception.getResponse(),
      exception.getStatus(),
    );
  }
}
