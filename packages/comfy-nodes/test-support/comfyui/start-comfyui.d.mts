// Types of the ComfyUI test harness (start-comfyui.mjs), for the TypeScript tests.
import type { ChildProcess } from 'node:child_process';

export const STUBS_DIR: string;
export const DEFAULT_PYTHON: string;

export interface RunningComfyUI {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  readonly baseDir: string;
  readonly inputDir: string;
  readonly outputDir: string;
  readonly startupMs: number;
  stop(): Promise<void>;
  logs(): string;
}

export function startComfyUI(options: { comfyDir?: string; customNodesDir?: string; port?: number; inputDir?: string; outputDir?: string; log?: boolean; python?: string; startupTimeoutMs?: number; extraArgs?: string[]; keepTemp?: boolean }): Promise<RunningComfyUI>;

export interface PromptRun {
  readonly status: number;
  readonly prompt_id?: string;
  readonly node_errors: Record<string, unknown>;
  readonly error: unknown;
  readonly history?: { readonly outputs: Record<string, { images?: { filename: string; subfolder: string; type: string }[] }>; readonly status: { readonly status_str: string; readonly messages: unknown[] } };
}

export function runPrompt(url: string, prompt: Record<string, unknown>, options?: { timeoutMs?: number; clientId?: string; pollIntervalMs?: number }): Promise<PromptRun>;
