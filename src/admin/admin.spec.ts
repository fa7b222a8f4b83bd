import { ArgumentMetadata, BadRequestException, HttpException, ValidationPipe } from '@nestjs/common';
import { Cidr } from '../reputation/cidr';
import { ADMIN_VALIDATION } from './blocklist.controller';
import { NewBlocklistEntryDto } from './blocklist.dto';
import { ParseCidrPipe } from './parse-cidr.pipe';

/** The POST body through the admin controller's ValidationPipe: the DTO, or the 400's messages. */
async function body(value: unknown): Promise<NewBlocklistEntryDto | string[]> {
  try {
    return await new ValidationPipe(ADMIN_VALIDATION).transform(value, {
      type: 'body',
      metatype: NewBlocklistEntryDto,
    });
  } catch (error) {
    if (!(error instanceof BadRequestException)) throw error;
    return (error.getResponse() as { message: string[] }).message;
  }
}

describe('POST /blocklist body (NewBlocklistEntryDto through ValidationPipe)', () => {
  it('accepts a CIDR or an address, with an optional TTL and reason', async () => {
    expect(await body({ cidr: '203.0.113.7' })).toEqual(
      Object.assign(new NewBlocklistEntryDto(), { cidr: Cidr.parse('203.0.113.7/32') }),
    );
    expect(await body({ cidr: ' 2001:db8::/32 ', ttlSeconds: 60, reason: 'scan' })).toMatchObject({
      cidr: Cidr.parse('2001:db8::/32'),
      ttlSeconds: 60,
      reason: 'scan',
    });
  });

  it.each([
    [{}, /^"cidr" is required/],
    [{ cidr: 10 }, /^"cidr" is required/],
    [{ cidr: '10.0.0.1/8' }, /^"cidr": 10\.0\.0\.1\/8 has host bits set: did you mean 10\.0\.0\.0\/8\?$/],
    [{ cidr: 'nope' }, /^"cidr": not an IP address or CIDR: "nope"$/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: 0 }, /^"ttlSeconds" must be an integer in \[1, 315360000\]$/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: 1.5 }, /^"ttlSeconds" must be an integer/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: '60' }, /^"ttlSeconds" must be an integer/],
    [{ cidr: '10.0.0.0/8', ttlSeconds: null }, /^"ttlSeconds" must be an integer/],
    [{ cidr: '10.0.0.0/8', reason: 5 }, /^"reason" must be a string of at most 200 characters$/],
    [{ cidr: '10.0.0.0/8', ttl: 5 }, /^property ttl should not exist$/],
  ])('answers 400 for %j, naming the field', async (value, message) => {
    const messages = await body(value);
    expect(messages).toEqual([expect.stringMatching(message)]);
  });

  it('answers 400 for a reason longer than 200 characters', async () => {
    expect(await body({ cidr: '10.0.0.0/8', reason: 'x'.repeat(200) })).toMatchObject({ reason: 'x'.repeat(200) });
    expect(await body({ cidr: '10.0.0.0/8', reason: 'x'.repeat(201) })).toEqual([
      '"reason" must be a string of at most 200 characters',
    ]);
  });

  it('lists every field in error, one message each', async () => {
    expect(await body({ cidr: 'x', ttlSeconds: -1, reason: 1, extra: true })).toHaveLength(4);
  });

  it.each([null, [{ cidr: '10.0.0.0/8' }], 'text'])(
    'answers 400 for a body that is not an object: %j',
    async (value) => {
      await expect(
        new ValidationPipe(ADMIN_VALIDATION).transform(value, { type: 'body', metatype: NewBlocklistEntryDto }),
      ).rejects.toThrow(BadRequestException);
    },
  );
});

describe('ParseCidrPipe', () => {
  const query: ArgumentMetadata = { type: 'query', data: 'cidr' };
  const pipe = new ParseCidrPipe();

  it('reads an address or a network, blanks trimmed', () => {
    expect(pipe.transform(' 10.0.0.0/8 ', query)).toEqual(Cidr.parse('10.0.0.0/8'));
    expect(pipe.transform('2001:db8::1', query).toString()).toBe('2001:db8::1/128');
  });

  it.each([
    [undefined, 'query parameter "cidr" is required (an IP address or CIDR)'],
    [['10.0.0.0/8', '10.0.0.0/16'], 'query parameter "cidr" is required (an IP address or CIDR)'],
    ['10.0.0.1/8', '"cidr": 10.0.0.1/8 has host bits set: did you mean 10.0.0.0/8?'],
  ])('answers 400 for %j', (value, message) => {
    let error: unknown;
    try {
      pipe.transform(value, query);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(BadRequestException);
    expect((error as HttpException).message).toBe(message);
  });
});
