import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, fromRoot } from '../test-support/run-cli.js';
import { EXIT_CODES } from './io.js';

const HAS_FFMPEG = spawnSync('ffmpeg', ['-version']).status === 0;


const small = ['--model', fromRoot('fixtures/models/tiny-sd-turbo'), '--width', '64', '--height', '64', '--cfg-type', 'none', '--device', 'cpu'];

describe('streamdiffusion stream', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'sd-stream-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('says how to install ffmpeg when it is not there, and wants an input', async () => {
    const missing = await cli('stream', join(directory, 'in.mp4'), '--out', join(directory, 'out.mp4'), '--ffmpeg', join(directory, 'no-ffmpeg'), ...small);
    expect(missing.code).toBe(EXIT_CODES.invalid);
    expect(missing.stderr).toMatch(/needs ffmpeg .*apt-get install ffmpeg/);
    expect((await cli('stream', '--out', join(directory, 'out.mp4'), ...small)).code).toBe(EXIT_CODES.usage);
  });

  // CI installs ffmpeg (.ci/run); elsewhere this part needs it installed (apt-get install ffmpeg).
  describe.skipIf(!HAS_FFMPEG && process.env.CI === undefined)('with ffmpeg', () => {
    it('turns a video file into a processed video of the same frame count and rate, at the pipeline size', async () => {
      const input = join(directory, 'test.mp4');
      execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=96x72:rate=10', '-frames:v', '12', '-pix_fmt', 'yuv420p', input]);
      const out = join(directory, 'out', 'processed.mp4');
      const { code, stdout } = await cli('stream', input, '--out', out, ...small, '--t-index-list', '20,40', '--json');
      expect(code).toBe(EXIT_CODES.ok);
      expect(JSON.parse(stdout)).toMatchObject({ ok: true, command: 'stream', output: out, frames: 12, width: 64, height: 64, frameRate: 10 });
      const probe = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_packets', '-show_entries', 'stream=nb_read_packets,width,height,r_frame_rate', '-of', 'csv=p=0', out]).toString().trim();
      expect(probe).toBe('64,64,10/1,12');

      const limited = await cli('stream', input, '--out', join(directory, 'five.webm'), ...small, '--max-frames', '5', '--json');
      expect(JSON.parse(limited.stdout)).toMatchObject({ frames: 5 });
    });

    it('refuses a file that is not a video, naming it', async () => {
      const text = join(directory, 'notes.mp4');
      await writeFile(text, 'not a video');
      const result = await cli('stream', text, '--out', join(directory, 'x.mp4'), ...small);
      expect(result.code).toBe(EXIT_CODES.invalid);
      expect(result.stderr).toMatch(/notes\.mp4: not a video ffmpeg can read/);
    });
  });
});
