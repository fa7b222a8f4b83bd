/*
 * The decorators of AgentEnvironment. Each variable arrives as text (undefined only for the optional ones left unset);
 * class-transformer converts it and class-validator checks the result. A value that cannot be converted stays the text
 * it was, so that the message quotes what was given.
 */
import { applyDecorators } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { ValidateBy, ValidationOptions } from 'class-validator';

/** The text without surrounding blanks. */
export function Trimmed(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));
}

/** The text without surrounding blanks, or undefined when nothing is left: set to "" is unset. */
export function TrimmedOrUnset(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) => unsetIfBlank(value));
}

/** {@link TrimmedOrUnset}'s conversion, for a variable that is converted further. */
export function unsetIfBlank(value: unknown): unknown {
  return typeof value === 'string' ? value.trim() || undefined : value;
}

/** Decimal digits become a number; anything else ("1.5", "-1", "1e3", "") stays text. */
export function integerFromText(value: unknown): unknown {
  const text = typeof value === 'string' ? value.trim() : value;
  return typeof text === 'string' && /^\d+$/.test(text) ? Number(text) : text;
}

/** An integer in [min, max]. */
export function IsIntegerIn(min: number, max: number, options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isIntegerIn',
      constraints: [min, max],
      validator: {
        validate: (value: unknown) =>
          Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max,
        defaultMessage: (args) => `${args!.property} must be an integer in [${min}, ${max}], got ${quote(args!.value)}`,
      },
    },
    options,
  );
}

/** A variable holding an integer in [min, max], written in decimal digits. */
export function IntegerText(min: number, max: number): PropertyDecorator {
  return applyDecorators(
    Transform(({ value }: { value: unknown }) => integerFromText(value)),
    IsIntegerIn(min, max),
  );
}

/** What was given, quoted, for a message. */
export function quote(value: unknown): string {
  return JSON.stringify(String(value));
}
