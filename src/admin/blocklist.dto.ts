import { Transform } from 'class-transformer';
import { IsInt, IsString, Max, MaxLength, Min, ValidateBy, ValidateIf } from 'class-validator';
import { AGENT_LIMITS } from '../config/agent.config';
import { BlocklistEntry, NewBlocklistEntry } from '../reputation/blocklist.store';
import { Cidr } from '../reputation/cidr';

const { maxReasonLength, maxTtlSeconds } = AGENT_LIMITS;
const TTL_MESSAGE = `"ttlSeconds" must be an integer in [1, ${maxTtlSeconds}]`;
const REASON_MESSAGE = `"reason" must be a string of at most ${maxReasonLength} characters`;

/** Absent is allowed, null is not: a field is either given a value or left out. */
const Optional = (): PropertyDecorator => ValidateIf((_object: object, value: unknown) => value !== undefined);

/** The body of `POST /blocklist`: `{"cidr": "203.0.113.0/24", "ttlSeconds": 3600, "reason": "…"}`. */
export class NewBlocklistEntryDto implements NewBlocklistEntry {
  /** An address or a CIDR, IPv4 or IPv6 ("203.0.113.7", "2001:db8::/32"). */
  @Transform(({ value }: { value: unknown }) => toCidr(value))
  @ValidateBy({
    name: 'isCidr',
    validator: {
      validate: (value: unknown) => value instanceof Cidr,
      defaultMessage: (args) =>
        args!.value instanceof Error
          ? `"cidr": ${args!.value.message}`
          : '"cidr" is required: an IP address or CIDR, e.g. "203.0.113.7" or "2001:db8::/32"',
    },
  })
  readonly cidr!: Cidr;

  /** Time to live in seconds; absent: forever. */
  @Optional()
  @IsInt({ message: TTL_MESSAGE })
  @Min(1, { message: TTL_MESSAGE })
  @Max(maxTtlSeconds, { message: TTL_MESSAGE })
  readonly ttlSeconds?: number;

  @Optional()
  @IsString({ message: REASON_MESSAGE })
  @MaxLength(maxReasonLength, { message: REASON_MESSAGE })
  readonly reason?: string;
}

/** A blocklist entry as the admin API shows it. */
export interface BlocklistEntryView {
  cidr: string;
  reason: string | null;
  addedAt: string;
  expiresAt: string | null;
}

export function toView(entry: BlocklistEntry): BlocklistEntryView {
  return {
    cidr: entry.cidr.toString(),
    reason: entry.reason ?? null,
    addedAt: new Date(entry.addedAt).toISOString(),
    expiresAt: entry.expiresAt === undefined ? null : new Date(entry.expiresAt).toISOString(),
  };
}

/** Text as a Cidr, or the reason it is not one, for the message; anything else as it is. */
function toCidr(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return Cidr.parse(value.trim());
  } catch (error) {
    return error;
  }
}
