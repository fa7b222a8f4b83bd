import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  HttpStatus,
  NotFoundException,
  Post,
  Query,
  UseFilters,
  UseGuards,
  UsePipes,
  ValidationPipe,
  ValidationPipeOptions,
} from '@nestjs/common';
import { BlocklistStore } from '../reputation/blocklist.store';
import { Cidr } from '../reputation/cidr';
import { AdminAccessGuard } from './admin-access.guard';
import { BlocklistEntryView, NewBlocklistEntryDto, toView } from './blocklist.dto';
import { BlocklistUnavailableFilter } from './blocklist-unavailable.filter';
import { ParseCidrPipe } from './parse-cidr.pipe';

/** How the admin API validates its input: the DTO's fields only, each with its first problem. */
export const ADMIN_VALIDATION: ValidationPipeOptions = {
  transform: true,
  whitelist: true,
  forbidNonWhitelisted: true,
  stopAtFirstError: true,
};

/**
 * The admin API (HTTP). Changes are visible to the next NOTIFY when the call returns — with Redis, on every agent.
 *
 *     GET    /blocklist                    → 200 [entries]
 *     POST   /blocklist {cidr, ttlSeconds?, reason?} → 201 entry
 *     DELETE /blocklist?cidr=10.0.0.0/8    → 204, or 404 when absent
 *
 * 400 for invalid input, 503 while the store cannot be reached; 401 without ADMIN_TOKEN when it is set, 403 for a
 * client off loopback when it is not (AdminAccessGuard). Guards, pipes and filters are bound here, not globally: a
 * global enhancer would make nestjs-spoe run the SPOE handlers through Nest's slower generic pipeline. ValidationPipe
 * is bound to the body's route: at the controller it would also run, before ParseCidrPipe, on the `cidr` parameter
 * (typed Cidr) and take a missing one for an empty Cidr object to validate.
 */
@Controller('blocklist')
@UseGuards(AdminAccessGuard)
@UseFilters(BlocklistUnavailableFilter)
export class BlocklistController {
  constructor(private readonly store: BlocklistStore) {}

  @Get()
  async list(): Promise<BlocklistEntryView[]> {
    return (await this.store.list()).map(toView);
  }

  @Post()
  @UsePipes(new ValidationPipe(ADMIN_VALIDATION))
  async add(@Body() entry: NewBlocklistEntryDto): Promise<BlocklistEntryView> {
    return toView(await this.store.add(entry));
  }

  @Delete()
  @HttpCode(HttpStatus.NO_CONTENT)
  async remove(@Query('cidr', ParseCidrPipe) cidr: Cidr): Promise<void> {
    if (!(await this.store.remove(cidr))) throw new NotFoundException(`${cidr.toString()} is not on the blocklist`);
  }
}
