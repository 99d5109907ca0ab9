/**
 * `stream <input> --out <video>`: a video file (or a camera, `--camera /dev/video0`) decoded by
 * ffmpeg into frames at the pipeline's size, each frame through the pipeline in order, the outputs
 * encoded by ffmpeg into a video file; a progress bar with live fps on a terminal, a line per
 * second otherwise. ffmpeg is Debian's package (or any on PATH, or `--ffmpeg`); without it, a clear
 * error saying how to install it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { RgbImage } from '@streamdiffusion/core';
import { SingleBar } from 'cli-progress';
import { Command } from 'commander';
import { CliError, EXIT_CODES, integerFlag, report, wantsJson, type Io } from '../io.js';
import { openPipeline, withPipelineFlags } from '../pipeline-options.js';

/** Runs ffmpeg/ffprobe and resolves with its exit code and output; -1 when it is not there. */
function runTool(command: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', () => done({ code: -1, output: '' }));
    child.on('close', (code) => done({ code: code ?? 1, output }));
  });
}

const MISSING_FFMPEG = 'needs ffmpeg to read and write video: install it (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) or give --ffmpeg <path>';

/** Frames of `frameBytes` each from a readable stream, as they arrive. */
async function* framesOf(child: ChildProcessWithoutNullStreams, frameBytes: number): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= frameBytes) {
      yield pending.subarray(0, frameBytes);
      pending = pending.subarray(frameBytes);
    }
  }
}

function closed(child: ChildProcessWithoutNullStreams): Promise<number> {
  return new Promise((done) => {
    if (child.exitCode !== null) done(child.exitCode);
    else child.once('close', (code) => done(code ?? 1));
  });
}

export function streamCommand(io: Io): Command {
  return withPipelineFlags(
    new Command('stream')
      .description('Transform a video file (or a camera) through ffmpeg into a video file, frame by frame, with progress and live fps.')
      .argument('[input]', 'a video file ffmpeg can read')
      .requiredOption('--out <file>', 'the output video (.mp4, .webm, .mkv…: ffmpeg picks the format from the name)')
      .option('--camera <device>', 'read a camera instead of a file (Linux: /dev/video0, through v4l2)')
      .option('--fps <n>', 'output frame rate (default: the input’s, else 25)')
      .option('--max-frames <n>', 'stop after this many frames (a camera runs until Ctrl-C otherwise)')
      .option('--ffmpeg <path>', 'the ffmpeg to run', process.env.STREAMDIFFUSION_FFMPEG ?? 'ffmpeg'),
  ).action(async (input: string | undefined, options: Record<string, unknown>, command: Command) => {
    const ffmpeg = String(options.ffmpeg);
    if ((input === undefined) === (options.camera === undefined)) throw new CliError('stream: give an input video file or --camera <device> (one of them)', EXIT_CODES.usage);
    const maxFrames = options.maxFrames === undefined ? Number.POSITIVE_INFINITY : integerFlag('max-frames', options.maxFrames, 1);
    if (options.fps !== undefined && !(Number(options.fps) > 0)) throw new CliError(`--fps: expected a positive number, got ${JSON.stringify(options.fps)}`, EXIT_CODES.usage);
    const probe = await runTool(ffmpeg, ['-version']);
    if (probe.code !== 0) throw new CliError(`stream ${MISSING_FFMPEG}${probe.code === -1 ? '' : ` (${ffmpeg} -version failed)`}`, EXIT_CODES.invalid);

    // The input's frame count and rate, when it is a file ffprobe (beside ffmpeg) can read.
    let total = Number.NaN;
    let rate = options.fps === undefined ? Number.NaN : Number(options.fps);
    if (input !== undefined) {
      const ffprobe = ffmpeg.replace(/ffmpeg(\.exe)?$/, 'ffprobe$1');
      const info = await runTool(ffprobe, ['-v', 'error', '-select_streams', 'v:0', '-count_packets', '-show_entries', 'stream=nb_read_packets,r_frame_rate', '-of', 'csv=p=0', resolve(input)]);
      if (info.code === 0) {
        const [fraction, packets] = info.output.trim().split(',');
        const [numerator, denominator] = (fraction ?? '').split('/').map(Number);
        if (Number.isNaN(rate) && numerator !== undefined && denominator) rate = numerator / denominator;
        total = Number(packets);
      } else if (info.code !== -1) {
        throw new CliError(`${input}: not a video ffmpeg can read (${info.output.trim().split('\n').at(-1)})`, EXIT_CODES.invalid);
      }
    }
    if (!(rate > 0)) rate = 25;

    const pipeline = await openPipeline(options);
    const { width, height } = pipeline.config;
    const out = resolve(String(options.out));
    await mkdir(dirname(out), { recursive: true });
    const source = input === undefined ? ['-f', 'v4l2', '-i', String(options.camera)] : ['-i', resolve(input)];
    const reader = spawn(ffmpeg, ['-v', 'error', ...source, '-vf', `scale=${width}:${height}`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']);
    const writer = spawn(ffmpeg, ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(rate), '-i', '-', '-pix_fmt', 'yuv420p', out]);
    let readerErrors = '';
    let writerErrors = '';
    reader.stderr.on('data', (chunk: Buffer) => (readerErrors += chunk.toString()));
    writer.stderr.on('data', (chunk: Buffer) => (writerErrors += chunk.toString()));
    const json = wantsJson(command);
    const bar = !json && process.stderr.isTTY ? new SingleBar({ format: 'stream |{bar}| {value}/{total} frames · {fps} fps', stream: process.stderr }) : undefined;
    bar?.start(Number.isFinite(total) ? Math.min(total, maxFrames) : 0, 0, { fps: '–' });

    const started = performance.now();
    let frames = 0;
    let lastLine = started;
    const recent: number[] = [];
    try {
      for await (const raw of framesOf(reader, width * height * 3)) {
        const frame: RgbImage = { data: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), width, height, channels: 3 };
        const result = await pipeline.stream.img2img(frame);
        const image = result.images[0]!;
        if (!writer.stdin.write(image.data)) await new Promise((done) => writer.stdin.once('drain', done));
        frames += 1;
        const now = performance.now();
        recent.push(now);
        while (recent.length > 30) recent.shift();
        const fps = recent.length > 1 ? ((recent.length - 1) * 1000) / (now - recent[0]!) : 0;
        bar?.update(frames, { fps: fps.toFixed(1) });
        if (bar === undefined && !json && now - lastLine > 1000) {
          io.stderr(`stream: ${frames}${Number.isFinite(total) ? `/${total}` : ''} frames, ${fps.toFixed(1)} fps\n`);
          lastLine = now;
        }
        if (frames >= maxFrames) {
          reader.kill();
          break;
        }
      }
    } finally {
      bar?.stop();
      writer.stdin.end();
      await pipeline.close();
    }
    const [readCode, writeCode] = await Promise.all([closed(reader), closed(writer)]);
    if (frames === 0) throw new CliError(`no frames came from ${input ?? String(options.camera)}${readerErrors === '' ? '' : `: ${readerErrors.trim().split('\n').at(-1)}`}`, readCode === 0 ? EXIT_CODES.invalid : EXIT_CODES.failed);
    if (writeCode !== 0) throw new CliError(`ffmpeg could not write ${out}: ${writerErrors.trim().split('\n').at(-1) ?? `exit code ${writeCode}`}`, EXIT_CODES.failed);
    const seconds = (performance.now() - started) / 1000;
    report(io, command, { command: 'stream', output: out, frames, seconds, fps: frames / seconds, width, height, frameRate: rate }, [`${out}: ${frames} frames ${width}×${height} at ${rate.toFixed(2)} fps, in ${seconds.toFixed(1)} s (${(frames / seconds).toFixed(1)} fps through the pipeline)`]);
  });
}
