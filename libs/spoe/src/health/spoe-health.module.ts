import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { SpoeHealthIndicator } from './spoe.health';

/**
 * The terminus side of nestjs-spoe: provides {@link SpoeHealthIndicator}. `SpoeModule.forRoot` imports it by itself
 * when @nestjs/terminus is installed; import it yourself only next to a SpoeServer provided another way.
 */
@Module({ imports: [TerminusModule], providers: [SpoeHealthIndicator], exports: [SpoeHealthIndicator] })
export class SpoeHealthModule {}
