import { SPOE_DEFAULTS } from '../spoe.constants';
import { normalizeSpoeOptions, SpoeOptionsError } from './spoe.options';

describe('normalizeSpoeOptions: the limits', () => {
  it('takes maxConnections and maxInFlightBytes from SPOE_DEFAULTS when they are not set', () => {
    const options = normalizeSpoeOptions();
    expect(options.maxConnections).toBe(SPOE_DEFAULTS.maxConnections);
    expect(options.maxInFlightBytes).toBe(SPOE_DEFAULTS.maxInFlightBytes);
  });

  it.each(['maxConnections', 'maxInFlightBytes'] as const)('accepts any positive integer as %s', (name) => {
    expect(normalizeSpoeOptions({ [name]: 1 })[name]).toBe(1);
    expect(normalizeSpoeOptions({ [name]: 1_000_000 })[name]).toBe(1_000_000);
  });

  it.each(['maxConnections', 'maxInFlightBytes'] as const)('refuses a %s that is not a positive integer', (name) => {
    for (const value of [0, -1, 1.5, Number.NaN, '100' as unknown as number]) {
      expect(() => normalizeSpoeOptions({ [name]: value })).toThrow(SpoeOptionsError);
      expect(() => normalizeSpoeOptions({ [name]: value })).toThrow(name);
    }
  });
});
