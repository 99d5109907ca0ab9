// The demo in a real browser: Debian's chromium driven by playwright-core, headless, with a fake
// camera fed from a generated video; the page talks to a real `streamdiffusion serve` on the tiny
// model (and, with a config file, on a model with a ControlNet and an IP-Adapter). Frames must come
// back, control changes must reach the pipeline, the page must show no errors; screenshots are kept
// in test-artifacts/.
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openModel, startServer, type OpenModel, type StreamServer } from '@streamdiffusion/cli';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const fromRoot = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));

/**
 * A Y4M video (what chromium's fake camera reads): `frames` frames of a moving pattern, 4:2:0.
 * Y4M is a header line, then per frame "FRAME\n" and the Y, U and V planes.
 */
function y4m(width: number, height: number, frames: number): Buffer {
  const parts: Buffer[] = [Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\n`)];
  for (let frame = 0; frame < frames; frame += 1) {
    const luma = Buffer.alloc(width * height);
    for (let y = 0; y < height; y += 1) for (let x = 0; x < width; x += 1) luma[y * width + x] = (((x + frame * 4) >> 4) + (y >> 4)) % 2 === 0 ? 220 : 40;
    const chroma = Buffer.alloc((width / 2) * (height / 2), 128 + ((frame * 8) % 64));
    parts.push(Buffer.from('FRAME\n'), luma, chroma, Buffer.alloc((width / 2) * (height / 2), 100));
  }
  return Buffer.concat(parts);
}

interface DemoWindow {
  readonly demo: { readonly state: { readonly frames: number }; readonly updates: { applied: string[]; parameters: Record<string, unknown> }[]; readonly errors: string[] };
}
const framesShown = (page: Page): Promise<number> => page.evaluate(() => (globalThis as unknown as DemoWindow).demo.state.frames);
/** Waits until the page has shown `count` frames; on a timeout the error says what the page reported. */
async function waitForFrames(page: Page, count: number, problems: readonly string[] = []): Promise<void> {
  try {
    await page.waitForFunction((least) => (globalThis as unknown as DemoWindow).demo.state.frames >= least, count, { timeout: 60_000 });
  } catch (error) {
    const seen = await page.evaluate(() => (globalThis as unknown as DemoWindow).demo);
    const texts = await Promise.all(['#status', '#message'].map((selector) => page.locator(selector).textContent()));
    throw new Error(`${count} frames did not come: the page shows ${JSON.stringify({ frames: seen.state.frames, errors: seen.errors, status: texts[0], message: texts[1] })}; its console: ${JSON.stringify(problems)}`, { cause: error });
  }
}
/** The next `updated` answer after `seen` of them. */
async function nextUpdate(page: Page, seen: number): Promise<{ applied: string[]; parameters: Record<string, unknown> }> {
  const handle = await page.waitForFunction((count) => (globalThis as unknown as DemoWindow).demo.updates[count], seen, { timeout: 30_000 });
  return (await handle.jsonValue()) as { applied: string[]; parameters: Record<string, unknown> };
}
/** Moves a slider as a hand does: one value, one change event. */
const slide = (slider: Locator, value: string): Promise<void> =>
  slider.evaluate((element, to) => {
    const input = element as unknown as { value: string; dispatchEvent(event: unknown): boolean };
    input.value = to;
    input.dispatchEvent(new Event('change'));
  }, value);
/** Console errors and page errors, as they happen. */
function problemsOf(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  return problems;
}

describe.skipIf(CHROMIUM === undefined && process.env.CI === undefined)('the demo page in chromium (fake camera, tiny model, CPU)', () => {
  let directory: string;
  let opened: OpenModel;
  let server: StreamServer;
  let browser: Browser;
  beforeAll(async () => {
    if (CHROMIUM === undefined) throw new Error('chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH); CI installs it in .ci/run');
    directory = await mkdtemp(join(tmpdir(), 'sd-demo-'));
    const video = join(directory, 'camera.y4m');
    await writeFile(video, y4m(160, 120, 20));
    opened = await openModel({ model: fromRoot('fixtures/models/tiny-sd-turbo'), device: 'cpu', width: '64', height: '64', tIndexList: '20,40', prompt: 'a lighthouse' });
    server = await startServer(opened, { host: '127.0.0.1', port: 0, staticDir: fromRoot('apps/demo/public') });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${video}`, '--no-sandbox'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await opened?.close();
    if (directory !== undefined) await rm(directory, { recursive: true, force: true });
  });

  it('shows transformed camera frames, applies a control change to the pipeline, and has no errors', async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    await page.goto(server.url.replace(/^ws/, 'http').replace(/\/stream$/, '/'));

    // Frames come back from the pipeline and are shown.
    await page.waitForFunction(() => (globalThis as unknown as { demo: { state: { frames: number } } }).demo.state.frames >= 3, undefined, { timeout: 60_000 });
    const shown = await page.locator('#output').evaluate((element): number[] => {
      const image = element as unknown as { naturalWidth: number; naturalHeight: number };
      return [image.naturalWidth, image.naturalHeight];
    });
    expect(shown).toEqual([64, 64]);
    await expect(page.locator('#status').textContent()).resolves.toContain('64×64');

    // The controls were generated from the schema; a change goes through the updater to the pipeline.
    await expect(page.locator('#control-cfg_type').count()).resolves.toBe(0); // reload parameters are not live controls
    const guidance = page.locator('#control-guidance_scale');
    await expect(guidance.getAttribute('max')).resolves.toBe('100');
    await page.locator('#control-prompt').fill('a red boat at sea');
    await page.locator('#control-prompt').dispatchEvent('change');
    const update = await page.waitForFunction(() => (globalThis as unknown as { demo: { updates: { applied: string[]; parameters: { prompt: string } }[] } }).demo.updates.at(-1), undefined, { timeout: 30_000 });
    expect(await update.jsonValue()).toMatchObject({ applied: ['prompt'], parameters: { prompt: 'a red boat at sea' } });

    // Frames keep coming after the change.
    const before = await page.evaluate(() => (globalThis as unknown as { demo: { state: { frames: number } } }).demo.state.frames);
    await page.waitForFunction((count) => (globalThis as unknown as { demo: { state: { frames: number } } }).demo.state.frames >= count + 2, before, { timeout: 60_000 });

    await mkdir(fromRoot('test-artifacts'), { recursive: true });
    await page.screenshot({ path: fromRoot('test-artifacts/demo.png') });
    expect(await page.evaluate(() => (globalThis as unknown as { demo: { errors: string[] } }).demo.errors)).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('with a ControlNet and an IP-Adapter (config file): their scale sliders and the style image apply live', async () => {
    // micro-sd-turbo with a UNet that takes both ControlNet residuals and IP-Adapter tokens.
    const folder = join(directory, 'micro-ip-controlnet');
    await cp(fromRoot('fixtures/models/micro-sd-turbo-ipadapter'), folder, { recursive: true });
    await rm(join(folder, 'unet'), { recursive: true });
    await cp(fromRoot('fixtures/ip-adapters/micro-regular-controlnet-unet'), join(folder, 'unet'), { recursive: true });
    const config = join(directory, 'both.json');
    await writeFile(
      config,
      JSON.stringify({
        model_id: folder,
        t_index_list: [32],
        width: 64,
        height: 64,
        prompt: 'a lighthouse',
        controlnets: [{ model_id: fromRoot('fixtures/controlnets/micro-canny'), conditioning_scale: 0.5, preprocessor: 'canny' }],
        ipadapters: [{ ipadapter_model_path: folder, style_image: fromRoot('fixtures/images/style.png'), scale: 0.7 }],
      }),
    );
    const both = await openModel({ config, device: 'cpu' });
    const bothServer = await startServer(both, { host: '127.0.0.1', port: 0, staticDir: fromRoot('apps/demo/public') });
    try {
      const page = await browser.newPage();
      const problems = problemsOf(page);
      await page.goto(bothServer.url.replace(/^ws/, 'http').replace(/\/stream$/, '/'));
      await waitForFrames(page, 2, problems);

      const controlnet = page.locator('input[name="controlnet-0-scale"]');
      await expect(controlnet.inputValue()).resolves.toBe('0.5');
      await slide(controlnet, '1.2');
      const first = await nextUpdate(page, 0);
      expect(first.applied).toEqual(['controlnets']);
      expect(first.parameters.controlnets).toMatchObject([{ conditioning_scale: 1.2, preprocessor: 'canny' }]);

      const scale = page.locator('input[name="ip-adapter-scale"]');
      await expect(scale.inputValue()).resolves.toBe('0.7');
      await slide(scale, '0.3');
      const second = await nextUpdate(page, 1);
      expect(second.applied).toEqual(['ipadapters']);
      expect(second.parameters.ipadapters).toMatchObject([{ scale: 0.3 }]);

      // A new style image from a file: sent as a data URL, embedded beside the running stream.
      await page.locator('input[name="ip-adapter-style"]').setInputFiles(fromRoot('fixtures/images/example.png'));
      const third = await nextUpdate(page, 2);
      expect(third.applied).toEqual(['ipadapters']);
      expect(String((third.parameters.ipadapters as { style_image: string }[])[0]!.style_image)).toMatch(/^data:image\/png;base64,/);

      await waitForFrames(page, (await framesShown(page)) + 2, problems);
      await page.screenshot({ path: fromRoot('test-artifacts/demo-controlnet-ip-adapter.png') });
      expect(await page.evaluate(() => (globalThis as unknown as DemoWindow).demo.errors)).toEqual([]);
      expect(problems).toEqual([]);
    } finally {
      await bothServer.close();
      await both.close();
    }
  });
});
