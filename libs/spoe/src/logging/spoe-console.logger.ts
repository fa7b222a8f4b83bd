import { ConsoleLogger, LogLevel } from '@nestjs/common';
import { spoeLogFields } from '../server/spoe.message-context';

/**
 * Nest's ConsoleLogger, whose lines written while an SPOE message is handled carry {@link spoeLogFields} as
 * structured params (text: `{ spoeMessage: 'check-client-ip', streamId: 7, … }` at the end of the line; JSON, with
 * `json: true`: a `params` object, or top-level fields with `flattenParams: true`). The server needs
 * `messageContext: true`. Use it as the app's logger: `NestFactory.create(AppModule, { logger: new
 * SpoeConsoleLogger() })`.
 */
export class SpoeConsoleLogger extends ConsoleLogger {
  protected override printMessages(
    messages: unknown[],
    context?: string,
    logLevel?: LogLevel,
    writeStreamType?: 'stdout' | 'stderr',
    errorStack?: unknown,
    params?: Record<string, unknown>,
  ): void {
    const fields = spoeLogFields();
    super.printMessages(
      messages,
      context,
      logLevel,
      writeStreamType,
      errorStack,
      fields ? { ...fields, ...params } : params,
    );
  }
}
