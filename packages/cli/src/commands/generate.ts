/**
 * `img2img` and `txt2img`: images from image files and folders, or from the prompt, written as PNG
 * or JPEG files. A still image goes through the stream n times (n = the length of t_index_list), so
 * its output has been through every step and holds nothing of the image before it; `--sequence`
 * treats the inputs as consecutive frames of one stream instead (one call each after the first).
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { writeImage, type RgbImage, type StreamDiffusionResult } from '@streamdiffusion/core';
import { Command } from 'commander';
import { CliError, EXIT_CODES, integerFlag, report, type Io } from '../io.js';
import { openPipeline, withPipelineFlags, type OpenPipeline } from '../pipeline-options.js';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);
const OUTPUT_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/** Every image file the arguments name: files as given, folders' image files sorted by name. */
export async function inputImages(paths: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const path of paths) {
    const full = resolve(path);
    const info = await stat(full).catch(() => undefined);
    if (info === undefined) throw new CliError(`${path}: no such file or folder`, EXIT_CODES.invalid);
    if (info.isDirectory()) {
      const names = (await readdir(full)).filter((name) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase())).sort();
      if (names.length === 0) throw new CliError(`${path}: a folder with no images (.png, .jpg, .jpeg, .webp)`, EXIT_CODES.invalid);
      found.push(...names.map((name) => join(full, name)));
    } else {
      found.push(full);
    }
  }
  return found;
}

/** Writes one output image, making its folder. */
async function save(path: string, image: RgbImage): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeImage(path, image);
}

/** The last lines of both commands: how many, at what size, and where they ran (and why there). */
const summary = (count: number, pipeline: OpenPipeline): string[] => [
  `${count} image${count === 1 ? '' : 's'} ${pipeline.config.width}×${pipeline.config.height}, t_index_list [${pipeline.config.t_index_list.join(', ')}], on ${pipeline.runtime.device.device}`,
  `  device: ${pipeline.runtime.device.reason}`,
];

/** Where output k of `count` goes: `out` itself when it names one image file, else a file in the folder `out`. */
function outputPath(out: string, count: number, name: string): string {
  const single = OUTPUT_EXTENSIONS.has(extname(out).toLowerCase());
  if (single && count > 1) throw new CliError(`--out ${out}: one file for ${count} images; give a folder`, EXIT_CODES.usage);
  return single ? resolve(out) : join(resolve(out), `${name}.png`);
}

export function img2imgCommand(io: Io): Command {
  return withPipelineFlags(
    new Command('img2img')
      .description('Transform image files (or every image in folders) and write the results.')
      .argument('<inputs...>', 'image files or folders of images')
      .option('--out <path>', 'output folder (one <input name>.png per input), or a .png/.jpg file for one input', 'out')
      .option('--sequence', 'the inputs are consecutive frames of one video: one stream, warmed up once'),
  ).action(async (inputs: string[], options: Record<string, unknown>, command: Command) => {
    const files = await inputImages(inputs);
    const out = String(options.out);
    const outputs = files.map((file) => outputPath(out, files.length, basename(file, extname(file))));
    const pipeline = await openPipeline(options);
    const written: { input: string; output: string; ms: number }[] = [];
    try {
      const steps = pipeline.config.t_index_list.length;
      for (const [index, file] of files.entries()) {
        const started = performance.now();
        // A still goes through every step of the stream batch on its own: n calls push the images
        // before it out of the denoising buffer. A sequence's frames follow each other, one call each.
        const calls = options.sequence === true && index > 0 ? 1 : steps;
        let result: StreamDiffusionResult | undefined;
        for (let call = 0; call < calls; call += 1) result = await pipeline.stream.img2img(file);
        if (result === undefined) throw new CliError(`${file}: no output`, EXIT_CODES.failed);
        const image = result.images[0];
        if (image === undefined) throw new CliError(`${file}: no output`, EXIT_CODES.failed);
        await save(outputs[index]!, image);
        written.push({ input: file, output: outputs[index]!, ms: performance.now() - started });
      }
    } finally {
      await pipeline.close();
    }
    report(io, command, { command: 'img2img', device: pipeline.runtime.device.device, images: written }, [
      ...written.map((item) => `${item.input} → ${item.output} (${item.ms.toFixed(0)} ms)`),
      ...summary(written.length, pipeline),
    ]);
  });
}

export function txt2imgCommand(io: Io): Command {
  return withPipelineFlags(
    new Command('txt2img')
      .description('Make images from the prompt and write them.')
      .option('--out <path>', 'output folder (txt2img-<k>.png), or a .png/.jpg file for one image', 'out')
      .option('--count <n>', 'how many images (the stream goes on: each is the next output)', '1'),
  ).action(async (options: Record<string, unknown>, command: Command) => {
    const count = integerFlag('count', options.count, 1);
    const out = String(options.out);
    // Every output path before the model loads: a wrong --out fails at once.
    const outputs = Array.from({ length: count }, (_, index) => outputPath(out, count, `txt2img-${index + 1}`));
    const pipeline = await openPipeline(options);
    const written: { output: string; ms: number }[] = [];
    try {
      const steps = pipeline.config.t_index_list.length * pipeline.config.frame_buffer_size;
      for (let index = 0; index < count; index += 1) {
        const started = performance.now();
        let result: StreamDiffusionResult;
        let calls = 0;
        do {
          result = await pipeline.stream.txt2img();
          calls += 1;
        } while (!result.warm && calls < steps + 1);
        await save(outputs[index]!, result.images[0]!);
        written.push({ output: outputs[index]!, ms: performance.now() - started });
      }
    } finally {
      await pipeline.close();
    }
    report(io, command, { command: 'txt2img', device: pipeline.runtime.device.device, images: written }, [
      ...written.map((item) => `→ ${item.output} (${item.ms.toFixed(0)} ms)`),
      ...summary(written.length, pipeline),
    ]);
  });
}
