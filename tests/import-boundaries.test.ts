import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// The repository's real eslint config keeps feature packages on core's public API and keeps
// onnxruntime inside core's runtime layer. Lint small probes placed at different paths.
const root = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd: root });

async function restrictedImports(code: string, path: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${root}${path}` });
  // A probe that does not parse reports no rule at all: that must not read as "allowed".
  const fatal = result?.messages.find((message) => message.fatal === true);
  if (fatal !== undefined) throw new Error(`${path} did not parse: ${fatal.message}`);
  return (result?.messages ?? [])
    .filter((message) => message.ruleId === 'no-restricted-imports' || message.ruleId === 'no-restricted-syntax')
    .map((message) => message.message);
}

describe('import boundaries', () => {
  it("keeps feature packages off core's internals", async () => {
    const messages = await restrictedImports(
      "import { createRuntime } from '@streamdiffusion/core/src/runtime/runtime.js';\nimport { x } from '../../core/src/index.js';\n",
      'packages/controlnet/src/probe.mjs',
    );
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatch(/Import @streamdiffusion\/core \(or @streamdiffusion\/core\/test\) only/);
  });

  it('lets feature packages use the public entry points', async () => {
    const code = "import { createRuntime } from '@streamdiffusion/core';\nimport { mock } from '@streamdiffusion/core/test';\n";
    expect(await restrictedImports(code, 'packages/ip-adapter/src/probe.mjs')).toEqual([]);
  });

  it('allows onnxruntime only in core/src/runtime: node, common and web, their subpaths, type imports, re-exports, import() and require()', async () => {
    const imports = [
      "import ort from 'onnxruntime-node';",
      "import { listSupportedBackends } from 'onnxruntime-node/dist/backend.js';",
      "import { Tensor } from 'onnxruntime-common';",
      "import type { InferenceSession } from 'onnxruntime-common/dist/esm/index.js';",
      "import * as web from 'onnxruntime-web';",
      "export { Tensor } from 'onnxruntime-web/webgpu';",
      "const ort = await import('onnxruntime-node');",
      "import { createRequire } from 'node:module';\nconst ort = createRequire(import.meta.url)('onnxruntime-node');",
      "const ort = require('onnxruntime-common');",
    ];
    for (const line of imports) {
      const code = `${line}\n`;
      expect(await restrictedImports(code, 'packages/core/src/runtime/probe.mjs'), line).toEqual([]);
      for (const path of ['packages/core/src/model-folder/probe.mjs', 'packages/tensorrt/src/probe.mjs', 'apps/demo/src/probe.mjs']) {
        expect(await restrictedImports(code, path), `${line} in ${path}`).toEqual([expect.stringMatching(/Only packages\/core\/src\/runtime\/ imports onnxruntime/)]);
      }
    }
  });
});
