import { BadRequestException, Body, Controller, Delete, Get, HttpCode, HttpException, HttpStatus, NotFoundException, Post, Query, ServiceUnavailableException } from '@nestjs/common';
import { BlocklistEntry, BlocklistStore, NewBlocklistEntry } from './blocklist.store';
import { Cidr } from './cidr';

/** A blocklist entry as the admin API shows it. */
export interface BlocklistEntryView {
  cidr: string;
  reason: string | null;
  addedAt: string;
  expiresAt: string | null;
}

const MAX_REASON_LENGTH = 200;
const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;

/**
 * The admin API (HTTP). Changes are visible to the next NOTIFY when the call returns — with Redis, on every agent.
 *
 *     GET    /blocklist                    → 200 [entries]
 *     POST   /blocklist {cidr, ttlSeconds?, reason?} → 201 entry
 *     DELETE /blocklist?cidr=10.0.0.0/8    → 204, or 404 when absent
 */
@Controller('blocklist')
export class BlocklistController {
  constructor(private readonly store: BlocklistStore) {}

  @Get()
  async list(): Promise<BlocklistEntryView[]> {
    return (await storeCall(this.store.list())).map(toView);
  }

  @Post()
  async add(@Body() body: unknown): Promise<BlocklistEntryView> {
    return toView(await storeCall(this.store.add(parseNewEntry(body))));
  }

  @Delete()
  @HttpCode(HttpStatus.NO_CONTENT)
  async remove(@Query('cidr') cidr: unknown): Promise<void> {
    if (typeof cidr !== 'string') throw new BadRequestException('query parameter "cidr" is required (an IP address or CIDR)');
    const network = parseCidr(cidr);
    if (!(await storeCall(this.store.remove(network)))) throw new NotFoundException(`${network.toString()} is not on the blocklist`);
  }
}

/** Validates a POST body; every problem is a 400 naming the field. */
export function parseNewEntry(body: unknown): NewBlocklistEntry {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequestException('expected a JSON object: {"cidr": "203.0.113.0/24", "ttlSeconds": 3600, "reason": "…"}');
  }
  const { cidr, ttlSeconds, reason, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw new BadRequestException(`unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}: expected cidr, ttlSeconds, reason`);
  if (typeof cidr !== 'string') throw new BadRequestException('"cidr" is required: an IP address or CIDR, e.g. "203.0.113.7" or "2001:db8::/32"');
  if (ttlSeconds !== undefined && (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS)) {
    throw new BadRequestException(`"ttlSeconds" must be an integer in [1, ${MAX_TTL_SECONDS}]`);
  }
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH)) {
    throw new BadRequestException(`"reason" must be a string of at most ${MAX_REASON_LENGTH} characters`);
  }
  return { cidr: parseCidr(cidr), ...(ttlSeconds !== undefined && { ttlSeconds }), ...(reason !== undefined && { reason }) };
}

function parseCidr(text: string): Cidr {
  try {
    return Cidr.parse(text.trim());
  } catch (error) {
    throw new BadRequestException(`"cidr": ${(error as Error).message}`);
  }
}

/** A store that cannot be reached (Redis away) is a 503 naming the cause, not a 500. */
async function storeCall<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof HttpException) throw error;
    throw new ServiceUnavailableException(`the blocklist store is unavailable: ${(error as Error).message}`);
  }
}

function toView(entry: BlocklistEntry): BlocklistEntryView {
  return {
    cidr: entry.cidr.toString(),
    reason: entry.reason ?? null,
    addedAt: new Date(entry.addedAt).toISOString(),
    expiresAt: entry.expiresAt === undefined ? null : new Date(entry.expiresAt).toISOString(),
  };
}
