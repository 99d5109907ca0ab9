// Test harness: start a real ComfyUI server (CPU, Debian python3 + import stubs)
// for integration tests. Node 20 built-ins only. See README.md in this folder.
/* global fetch, AbortSignal */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { clearTimeout, setTimeout } from 'node:timers';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Folder of minimal Python import stubs put first on PYTHONPATH. */
export const STUBS_DIR = path.join(HERE, 'stubs');

/** Debian's interpreter (python3-torch etc. live in its dist-packages), never a venv/pyenv shim. */
export const DEFAULT_PYTHON = '/usr/bin/python3';

const MAX_LOG_CHARS = 4 * 1024 * 1024;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tail(text, lines = 60) {
  return text.split('\n').slice(-lines).join('\n');
}

/**
 * Start ComfyUI.
 *
 * @param {object} opts
 * @param {string} [opts.comfyDir]        ComfyUI checkout (default: $COMFYUI_DIR). Never modified
 *                                        (bytecode: $COMFYUI_PYCACHE_DIR or <tmpdir>/comfyui-test-pycache).
 * @param {string} [opts.customNodesDir]  A folder laid out like ComfyUI/custom_nodes (each child
 *                                        folder / .py file is one node pack). Added via an
 *                                        extra_model_paths.yaml `custom_nodes:` entry.
 * @param {number} [opts.port]            Default: a free port on 127.0.0.1.
 * @param {string} [opts.inputDir]        Default: <temp base>/input.
 * @param {string} [opts.outputDir]       Default: <temp base>/output.
 * @param {boolean|(line:string)=>void} [opts.log]  true: echo ComfyUI output to stderr.
 * @param {string} [opts.python]          Default: $COMFYUI_PYTHON or /usr/bin/python3.
 * @param {number} [opts.startupTimeoutMs] Default 180000.
 * @param {string[]} [opts.extraArgs]     Extra ComfyUI CLI flags.
 * @param {boolean} [opts.keepTemp]       Keep the temp base dir after stop().
 */
export async function startComfyUI({
  comfyDir = process.env.COMFYUI_DIR,
  customNodesDir,
  port,
  inputDir,
  outputDir,
  log = false,
  python = process.env.COMFYUI_PYTHON || DEFAULT_PYTHON,
  startupTimeoutMs = 180_000,
  extraArgs = [],
  keepTemp = false,
} = {}) {
  if (!comfyDir) throw new Error('startComfyUI: comfyDir not given and COMFYUI_DIR not set');
  comfyDir = path.resolve(comfyDir);
  if (!existsSync(path.join(comfyDir, 'main.py'))) {
    throw new Error(`startComfyUI: ${comfyDir} does not look like a ComfyUI checkout (no main.py)`);
  }
  if (!existsSync(python)) throw new Error(`startComfyUI: python interpreter ${python} not found (run setup.sh)`);

  // Private base directory: models/, custom_nodes/ (empty), input/, output/, temp/, user/, frontend.
  const baseDir = await mkdtemp(path.join(os.tmpdir(), 'comfyui-test-'));
  const frontEndDir = path.join(baseDir, 'frontend');
  const userDir = path.join(baseDir, 'user');
  inputDir = path.resolve(inputDir ?? path.join(baseDir, 'input'));
  outputDir = path.resolve(outputDir ?? path.join(baseDir, 'output'));
  for (const d of [
    path.join(baseDir, 'custom_nodes'),
    path.join(baseDir, 'models'),
    path.join(baseDir, 'temp'),
    frontEndDir,
    userDir,
    inputDir,
    outputDir,
  ]) {
    await mkdir(d, { recursive: true });
  }

  const args = [
    'main.py',
    '--cpu',
    '--disable-api-nodes',
    '--disable-auto-launch',
    '--listen', '127.0.0.1',
    '--port', String(port ?? (port = await freePort())),
    '--base-directory', baseDir,
    '--input-directory', inputDir,
    '--output-directory', outputDir,
    '--user-directory', userDir,
    '--front-end-root', frontEndDir,
    '--database-url', 'sqlite:///:memory:',
  ];
  if (customNodesDir) {
    customNodesDir = path.resolve(customNodesDir);
    if (!existsSync(customNodesDir)) throw new Error(`startComfyUI: customNodesDir ${customNodesDir} does not exist`);
    // JSON strings are valid YAML scalars, so odd characters in paths are safe.
    const yamlPath = path.join(baseDir, 'extra_model_paths.yaml');
    await writeFile(yamlPath, `comfy_test_harness:\n  custom_nodes: ${JSON.stringify(customNodesDir)}\n`);
    args.push('--extra-model-paths-config', yamlPath);
  }
  args.push(...extraArgs);

  const env = {
    ...process.env,
    PYTHONPATH: [STUBS_DIR, process.env.COMFYUI_EXTRA_PYTHONPATH].filter(Boolean).join(path.delimiter),
    PYTHONUNBUFFERED: '1',
    PYTHONNOUSERSITE: '1',
    // Bytecode goes to a private cache (never into comfyDir / customNodesDir) and is reused
    // between runs: warm startup ~2 s instead of ~5 s here.
    PYTHONPYCACHEPREFIX: process.env.COMFYUI_PYCACHE_DIR || path.join(os.tmpdir(), 'comfyui-test-pycache'),
    HF_HUB_OFFLINE: '1',
    DO_NOT_TRACK: '1',
  };
  delete env.PYTHONDONTWRITEBYTECODE;

  let logText = '';
  let pending = '';
  const onData = (chunk) => {
    const s = chunk.toString('utf8');
    logText += s;
    if (logText.length > MAX_LOG_CHARS) logText = logText.slice(-MAX_LOG_CHARS);
    if (!log) return;
    pending += s;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      if (typeof log === 'function') log(line);
      else process.stderr.write(`[comfyui] ${line}\n`);
    }
  };

  const startedAt = Date.now();
  const child = spawn(python, args, { cwd: comfyDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    child.once('error', (err) => {
      exitInfo = { code: null, signal: null, error: err };
      resolve(exitInfo);
    });
  });

  const url = `http://127.0.0.1:${port}`;
  let stopped = false;
  async function stop() {
    if (!stopped) {
      stopped = true;
      if (!exitInfo && child.pid) {
        const killGroup = (sig) => {
          try {
            process.kill(-child.pid, sig);
          } catch {
            try { child.kill(sig); } catch { /* already gone */ }
          }
        };
        killGroup('SIGTERM');
        let timer;
        const outcome = await Promise.race([
          exited.then(() => 'exited'),
          new Promise((resolve) => { timer = setTimeout(resolve, 10_000, 'timeout'); }),
        ]);
        clearTimeout(timer);
        if (outcome === 'timeout') killGroup('SIGKILL');
      }
      await exited;
      if (!keepTemp) await rm(baseDir, { recursive: true, force: true });
    }
    return exitInfo;
  }

  // Wait until the HTTP API answers.
  const deadline = startedAt + startupTimeoutMs;
  for (;;) {
    if (exitInfo) {
      await stop();
      throw new Error(
        `ComfyUI exited during startup (code ${exitInfo.code}, signal ${exitInfo.signal}${exitInfo.error ? `, ${exitInfo.error.message}` : ''}).\n` +
          `--- log tail ---\n${tail(logText)}`,
      );
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`ComfyUI did not answer ${url}/system_stats within ${startupTimeoutMs} ms.\n--- log tail ---\n${tail(logText)}`);
    }
    try {
      const res = await fetch(`${url}/system_stats`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) {
        await res.json();
        break;
      }
    } catch {
      /* not up yet */
    }
    await sleep(250);
  }

  return {
    url,
    port,
    process: child,
    baseDir,
    inputDir,
    outputDir,
    startupMs: Date.now() - startedAt,
    stop,
    logs: () => logText,
  };
}

/**
 * Queue an API-format prompt and wait for it to finish.
 * Resolves to { prompt_id, node_errors, error, status, history } where `history` is the
 * /history/<prompt_id> entry ({ status, outputs, ... }) or null if the prompt was rejected.
 * Note: POST /prompt may answer 200 and still report per-node problems in node_errors.
 */
export async function runPrompt(url, prompt, { timeoutMs = 120_000, clientId = randomUUID(), pollIntervalMs = 100 } = {}) {
  const res = await fetch(`${url}/prompt`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, client_id: clientId }),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: { type: 'invalid_response', message: text } };
  }
  const result = {
    status: res.status,
    prompt_id: body.prompt_id,
    node_errors: body.node_errors ?? {},
    error: body.error ?? null,
    history: null,
  };
  if (!res.ok || !result.prompt_id) return result;

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const h = await fetch(`${url}/history/${encodeURIComponent(result.prompt_id)}`);
    if (h.ok) {
      const all = await h.json();
      const entry = all[result.prompt_id];
      // ComfyUI only adds the history entry once execution finished (success or error).
      if (entry && (entry.status?.completed || entry.status?.status_str === 'error' || !entry.status)) {
        result.history = entry;
        return result;
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`runPrompt: prompt ${result.prompt_id} did not finish within ${timeoutMs} ms`);
    }
    await sleep(pollIntervalMs);
  }
}
