/**
 * `bench`: the pipeline the flags (or a config) describe, run for `--frames` calls after a warm-up
 * on a moving pattern at the output size; prints frames per second, latency, time per stage and per
 * model run. A benchmark that prints numbers, like `pnpm bench`; never a pass/fail check.
 */
import { FRAME_STAGES, measureStream, movingPattern } from '@streamdiffusion/core';
import { Command, Option } from 'commander';
import { integerFlag, report, type Io } from '../io.js';
import { openPipeline, withPipelineFlags } from '../pipeline-options.js';

export function benchCommand(io: Io): Command {
  return withPipelineFlags(
    new Command('bench')
      .description('Measure the pipeline: frames per second, latency, time per stage and per model.')
      .option('--frames <n>', 'calls to measure', '50')
      .option('--warmup <n>', 'calls before measuring (shader compilation, buffers filling)', '5')
      .addOption(new Option('--mode <mode>', 'what each call does').choices(['img2img', 'txt2img']).default('img2img')),
  ).action(async (options: Record<string, unknown>, command: Command) => {
    const frames = integerFlag('frames', options.frames, 0);
    const warmup = integerFlag('warmup', options.warmup, 0);
    const started = performance.now();
    const pipeline = await openPipeline(options);
    const loadMs = performance.now() - started;
    try {
      const { width, height, frame_buffer_size: f, t_index_list: steps, cfg_type: cfg } = pipeline.config;
      const inputs = Array.from({ length: 8 }, (_, index) => Array.from({ length: f }, (_, frame) => movingPattern(index * f + frame, width, height)));
      const call = (index: number) => (options.mode === 'txt2img' ? pipeline.stream.txt2img() : pipeline.stream.img2img(inputs[index % inputs.length]!));
      const measured = await measureStream({ runtime: pipeline.runtime, call, frames, warmup, framesPerCall: f });
      const ms = (value: number) => `${value.toFixed(2)} ms`;
      report(io, command, { command: 'bench', model: pipeline.config.model_id, device: pipeline.runtime.device, settings: { mode: options.mode, width, height, tIndexList: steps, cfgType: cfg, frameBufferSize: f, frames, warmup }, ...measured, loadMs }, [
        `model    ${pipeline.config.model_id}`,
        `device   ${pipeline.runtime.device.device} (${pipeline.runtime.device.reason})`,
        `settings ${String(options.mode)} ${width}×${height}, t_index_list [${steps.join(', ')}], cfg ${cfg}, frame_buffer_size ${f}; ${frames} calls after ${warmup} warm-up`,
        `fps      ${measured.fps.toFixed(2)} frames/s`,
        `latency  p50 ${ms(measured.latencyMs.p50)}, p99 ${ms(measured.latencyMs.p99)}, mean ${ms(measured.latencyMs.mean)}`,
        `stages   ${FRAME_STAGES.map((stage) => `${stage} ${ms(measured.stagesMs[stage])}`).join(', ')}`,
        `models   ${Object.entries(measured.models).map(([name, entry]) => `${name} ${ms(entry.msPerCall)}`).join(', ')} per call, inside the worker`,
        `startup  load ${ms(loadMs)}, first call ${ms(measured.firstCallMs)}`,
      ]);
    } finally {
      await pipeline.close();
    }
  });
}
