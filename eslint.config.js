// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Feature packages and apps reach core only through its public entry points. */
const coreInternals = {
  group: ['@streamdiffusion/core/*', '!@streamdiffusion/core/test', '**/core/src/**', '../core/**', '../../core/**'],
  message: 'Import @streamdiffusion/core (or @streamdiffusion/core/test) only: its internals are not API.',
};

/** Only core's runtime layer talks to onnxruntime: any of its packages (node, common, web), any subpath. */
const onnxruntime = {
  regex: '^onnxruntime-(node|common|web)(/.*)?$',
  message: 'Only packages/core/src/runtime/ imports onnxruntime (onnxruntime-node, -common or -web); use the runtime layer.',
};

/** The same rule for `import('onnxruntime-…')` and `require('onnxruntime-…')`, which no-restricted-imports does not see. */
const onnxruntimeSource = '/^onnxruntime-(node|common|web)\\b/'; // a selector regex cannot hold a "/"
const onnxruntimeLoads = [
  { selector: `ImportExpression[source.value=${onnxruntimeSource}]`, message: onnxruntime.message },
  { selector: `CallExpression[callee.name='require'][arguments.0.value=${onnxruntimeSource}]`, message: onnxruntime.message },
  { selector: `CallExpression[callee.callee.name='createRequire'][arguments.0.value=${onnxruntimeSource}]`, message: onnxruntime.message },
];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/.turbo/**', '.vendor/**', '.gpuhost/**', '.gpuhost-app/**', '.gl/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/require-await': 'off',
      'no-restricted-imports': ['error', { patterns: [onnxruntime] }],
      'no-restricted-syntax': ['error', ...onnxruntimeLoads],
    },
  },
  {
    files: ['packages/core/src/runtime/**'],
    rules: { 'no-restricted-imports': 'off', 'no-restricted-syntax': 'off' },
  },
  {
    files: ['packages/!(core)/**', 'apps/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [onnxruntime, coreInternals] }] },
  },
  {
    files: ['**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
  },
  {
    // The demo page's script runs in the browser.
    files: ['apps/demo/public/**/*.js'],
    languageOptions: {
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'navigator', 'performance', 'setInterval', 'WebSocket', 'FileReader', 'URL', 'Option'].map((name) => [name, 'readonly']),
      ),
    },
  },
);
