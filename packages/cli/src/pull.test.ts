/**
 * `models pull` against a local fake of the Hugging Face hub (test-support/fake-hub.ts) serving the
 * tiny model folder: the files arrive byte for byte, PyTorch weights are left out, a broken-off
 * transfer resumes with a range request, wrong bytes are caught by the hash, and no hub, a missing
 * repo and a refused token give errors that say what to do, with their exit codes.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeHub, type FakeHub } from '../test-support/fake-hub.js';
import { cli, fromRoot } from '../test-support/run-cli.js';
import { EXIT_CODES } from './io.js';

const REPO = 'streamdiffusion/tiny-sd-turbo';
const UNET = 'unet/model.onnx';

interface PullReport {
  readonly ok: boolean;
  readonly destination: string;
  readonly files: { path: string; size: number; status: string; check: string }[];
  readonly downloadedBytes: number;
  readonly skipped: string[];
  readonly modelFolder: { vae: string; imageToImage: boolean } | null;
}

describe('streamdiffusion models pull', () => {
  let hub: FakeHub;
  let directory: string;
  const pull = async (...argv: string[]) => {
    const result = await cli('models', 'pull', REPO, '--endpoint', hub.url, ...argv);
    return { ...result, report: result.code === EXIT_CODES.ok && argv.includes('--json') ? (JSON.parse(result.stdout) as PullReport) : undefined };
  };
  const downloads = (path: string) => hub.requests.filter((request) => request.url.endsWith(`/resolve/main/${path}`) && request.range !== 'bytes=0-0');

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'sd-pull-'));
    hub = await startFakeHub({
      repo: REPO,
      folder: fromRoot('fixtures/models/tiny-sd-turbo'),
      extra: { 'unet/diffusion_pytorch_model.safetensors': Buffer.alloc(2048, 7), 'README.md': Buffer.from('# tiny\n'), 'safety_checker/model.onnx': Buffer.alloc(64, 1) },
    });
  });
  afterAll(async () => {
    await hub.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('downloads the model folder byte for byte, checked by hash, leaving out PyTorch weights and the safety checker; the folder reads as a model', async () => {
    const to = join(directory, 'whole');
    const { code, stderr, report } = await pull('--to', to, '--json');
    expect(code, stderr).toBe(EXIT_CODES.ok);
    expect(report!.skipped.sort()).toEqual(['safety_checker/model.onnx', 'unet/diffusion_pytorch_model.safetensors']);
    const expected = [...hub.files.keys()].filter((path) => !report!.skipped.includes(path)).sort();
    expect(report!.files.map((file) => file.path).sort()).toEqual(expected);
    for (const path of expected) expect((await readFile(join(to, path))).equals(hub.files.get(path)!), path).toBe(true);
    // The hub's kinds of hash: sha256 for LFS files, git's blob sha1 for the rest.
    expect(report!.files.find((file) => file.path === UNET)).toMatchObject({ status: 'downloaded', check: 'sha256' });
    expect(report!.files.find((file) => file.path === 'model_index.json')).toMatchObject({ status: 'downloaded', check: 'git-sha1' });
    expect(report!.modelFolder).toMatchObject({ vae: 'taesd', imageToImage: true });
    expect(report!.downloadedBytes).toBe(expected.reduce((sum, path) => sum + hub.files.get(path)!.length, 0));

    // Pulled again: every file is already there (hash checked), nothing is downloaded.
    const before = hub.requests.length;
    const again = await pull('--to', to, '--json');
    expect(again.report!.files.every((file) => file.status === 'present')).toBe(true);
    expect(again.report!.downloadedBytes).toBe(0);
    expect(hub.requests.slice(before).filter((request) => request.url.includes('/resolve/'))).toEqual([]);
  });

  it('--include and --exclude choose the files; progress goes to stderr, a line per file', async () => {
    const to = join(directory, 'some');
    const { code, stdout, stderr } = await pull('--to', to, '--include', 'tokenizer/*', 'model_index.json', '--exclude', '**/merges.txt');
    expect(code, stderr).toBe(EXIT_CODES.ok);
    expect(stderr).toContain('pull: 4 file(s), 0 already here');
    expect(stderr).toContain('pull: tokenizer/vocab.json');
    expect(stdout).toContain(`${to}: 4 file(s)`);
    await expect(stat(join(to, 'tokenizer', 'merges.txt'))).rejects.toThrow();
    await expect(stat(join(to, UNET))).rejects.toThrow();
    // A model folder pulled in part is said to be one (with --include that is no error).
    expect(stdout).toMatch(/not a complete model folder: .*unet/);
    const none = await pull('--to', to, '--include', 'nothing/*');
    expect(none.code).toBe(EXIT_CODES.invalid);
    expect(none.stderr).toMatch(/no file to pull \(\d+ in the repo/);
  });

  it('resumes a transfer that broke off: the bytes that came are kept and the rest is asked for with a range', async () => {
    const to = join(directory, 'resumed');
    hub.cutOnce(UNET, 300_000);
    const broken = await pull('--to', to);
    expect(broken.code).toBe(EXIT_CODES.unavailable);
    expect(broken.stderr).toMatch(/unet\/model\.onnx: the transfer broke off at \d+ of \d+ bytes .*run the same command again to resume/);
    const kept = (await stat(join(to, `${UNET}.part`))).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(300_000);
    await expect(stat(join(to, UNET))).rejects.toThrow();

    const { code, report } = await pull('--to', to, '--json');
    expect(code).toBe(EXIT_CODES.ok);
    const unet = hub.files.get(UNET)!;
    expect(report!.files.find((file) => file.path === UNET)).toMatchObject({ status: 'resumed' });
    expect(downloads(UNET).at(-1)!.range).toBe(`bytes=${kept}-${unet.length - 1}`);
    expect((await readFile(join(to, UNET))).equals(unet)).toBe(true);
    await expect(stat(join(to, `${UNET}.part`))).rejects.toThrow();
  });

  it('catches bytes that do not match the hub’s hash: the file is removed, exit code 1, and a file spoiled on disk is fetched again', async () => {
    const to = join(directory, 'corrupt');
    const vocab = 'tokenizer/vocab.json';
    const good = hub.files.get(UNET)!;
    const bad = Buffer.from(good);
    bad[1000] = bad[1000]! ^ 0xff;
    hub.corrupt(UNET, bad);
    const { code, stderr } = await pull('--to', to);
    expect(code).toBe(EXIT_CODES.failed);
    expect(stderr).toMatch(/unet\/model\.onnx: the bytes do not match the hub's sha256 \(expected [0-9a-f]{64}, got [0-9a-f]{64}\); the file was removed/);
    await expect(stat(join(to, UNET))).rejects.toThrow();
    await expect(stat(join(to, `${UNET}.part`))).rejects.toThrow();
    hub.corrupt(UNET, good);

    // A file already on disk with the right size but other bytes is not taken for done.
    await writeFile(join(to, vocab), Buffer.alloc(hub.files.get(vocab)!.length, 32));
    const fixed = await pull('--to', to, '--json');
    expect(fixed.report!.files.find((file) => file.path === vocab)).toMatchObject({ status: 'downloaded', check: 'git-sha1' });
    expect((await readFile(join(to, vocab))).equals(hub.files.get(vocab)!)).toBe(true);
  });

  it('says it cannot reach the hub when offline (exit code 4), and names a missing repo or revision (exit code 3)', async () => {
    // A port nothing listens on.
    const port = await new Promise<number>((found) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const address = server.address() as { port: number };
        server.close(() => found(address.port));
      });
    });
    const offline = await cli('models', 'pull', REPO, '--endpoint', `http://127.0.0.1:${port}`, '--to', join(directory, 'offline'), '--json');
    expect(offline.code).toBe(EXIT_CODES.unavailable);
    const error = (JSON.parse(offline.stdout) as { error: { message: string } }).error.message;
    expect(error).toContain(`cannot reach http://127.0.0.1:${port} (ECONNREFUSED) while listing ${REPO}: are you offline?`);

    const missing = await cli('models', 'pull', 'someone/nothing', '--endpoint', hub.url, '--to', join(directory, 'missing'));
    expect(missing.code).toBe(EXIT_CODES.invalid);
    expect(missing.stderr).toContain(`someone/nothing: no such model repo, or no revision "main", on ${hub.url}`);
    const revision = await pull('--to', join(directory, 'missing'), '--revision', 'v9');
    expect(revision.code).toBe(EXIT_CODES.invalid);
    expect(revision.stderr).toContain('no revision "v9"');
    const malformed = await cli('models', 'pull', 'not-a-repo', '--endpoint', hub.url);
    expect(malformed.code).toBe(EXIT_CODES.invalid);
    expect(malformed.stderr).toContain('repo: expected "owner/name"');
  });

  it('sends the token to a hub that asks for one, and says what to do without it', async () => {
    const gated = await startFakeHub({ repo: REPO, folder: fromRoot('fixtures/models/tiny-sd-turbo/tokenizer'), token: 'hf_secret' });
    try {
      const without = await cli('models', 'pull', REPO, '--endpoint', gated.url, '--to', join(directory, 'gated'));
      expect(without.code).toBe(EXIT_CODES.invalid);
      expect(without.stderr).toContain('a gated or private repo needs a token: give --token or set HF_TOKEN');
      const withToken = await cli('models', 'pull', REPO, '--endpoint', gated.url, '--to', join(directory, 'gated'), '--token', 'hf_secret', '--json');
      expect(withToken.code, withToken.stdout).toBe(EXIT_CODES.ok);
      expect((JSON.parse(withToken.stdout) as PullReport).modelFolder).toBeNull();
      expect(await readFile(join(directory, 'gated', 'vocab.json'), 'utf8')).toBe(gated.files.get('vocab.json')!.toString());
    } finally {
      await gated.close();
    }
  });
});
