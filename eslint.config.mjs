import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

export default tseslint.config(
  { ignores: ['**/dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Production code never imports the test kit (nestjs-spoe/testing re-exports the client, not the other way round),
    // and only metrics/ imports prom-client and tracing/ @opentelemetry/*, optional peers the transport does without.
    files: ['libs/spoe/src/**/*.ts'],
    ignores: ['libs/spoe/src/testing/**', '**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['**/testing', '**/testing/*', 'prom-client', '**/metrics', '@opentelemetry/*', '**/tracing'] },
      ],
    },
  },
  {
    files: ['libs/spoe/src/metrics/**/*.ts', 'libs/spoe/src/tracing/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/testing', '**/testing/*'] }],
    },
  },
  {
    // The protocol layer is pure: bytes in, frames out. It must not know Nest or rxjs (nor the test kit).
    files: ['libs/spoe/src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['@nestjs/*', 'rxjs', 'rxjs/*', '**/testing', '**/testing/*'] }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: {
      globals: {
        module: 'writable',
        require: 'readonly',
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
      },
    },
  },
  {
    // The ceiling agent of the benchmark is a plain CommonJS script on purpose (no build, no TypeScript, no project
    // code).
    files: ['bench/agents/*.js'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  // Formatting is Prettier's (npm run format; checked by npm run lint): no ESLint rule argues with it.
  prettier,
);
