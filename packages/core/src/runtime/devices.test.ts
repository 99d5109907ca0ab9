import { describe, expect, it } from 'vitest';
import { DeviceUnavailableError, InvalidArgumentError } from '../errors/errors.js';
import { resolveDevice, type Device, type DeviceEnvironment, type DeviceRequest } from './devices.js';

/** A machine described by what files it has and which providers start. */
function machine(options: { files?: string[]; linkerCache?: string; starts?: Device[]; platform?: NodeJS.Platform }): DeviceEnvironment & { probed: Device[] } {
  const probed: Device[] = [];
  return {
    platform: options.platform ?? 'linux',
    arch: 'x64',
    fileExists: (path) => (options.files ?? []).includes(path),
    readText: (path) => (path === '/etc/ld.so.cache' ? options.linkerCache : undefined),
    providerFolder: '/ort/bin',
    libraryPath: undefined,
    probed,
    async probe(device) {
      probed.push(device);
      if (!(options.starts ?? ['cpu']).includes(device)) throw new Error(`Failed to start ${device}\nsecond line`);
    },
  };
}

const cudaFiles = ['/ort/bin/libonnxruntime_providers_shared.so', '/ort/bin/libonnxruntime_providers_cuda.so'];

describe('device resolution', () => {
  it('names the Vulkan loader when WebGPU cannot find it, without trying a session', async () => {
    const environment = machine({});
    const error = await resolveDevice('webgpu', environment).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect(error).toMatchObject({ device: 'webgpu', missing: 'vulkan-loader' });
    expect((error as Error).message).toMatch(/libvulkan\.so\.1.*apt-get install libvulkan1/);
    expect(environment.probed).toEqual([]);
  });

  it('says no GPU adapter when the loader is there but no adapter starts', async () => {
    const environment = machine({ linkerCache: '\0libvulkan.so.1\0/usr/lib/x86_64-linux-gnu/libvulkan.so.1' });
    await expect(resolveDevice('webgpu', environment)).rejects.toMatchObject({ missing: 'gpu-adapter' });
    expect(environment.probed).toEqual(['webgpu']);
  });

  it('finds the loader as a file too, and runs WebGPU when its session starts', async () => {
    const choice = await resolveDevice('webgpu', machine({ files: ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1'], starts: ['webgpu'] }));
    expect(choice.device).toBe('webgpu');
  });

  it('names the missing provider libraries for cuda and tensorrt', async () => {
    await expect(resolveDevice('cuda', machine({}))).rejects.toMatchObject({ missing: 'provider-libraries' });
    await expect(resolveDevice('cuda', machine({}))).rejects.toThrow(/libonnxruntime_providers_cuda\.so.*missing in \/ort\/bin/);
    await expect(resolveDevice('tensorrt', machine({ files: cudaFiles }))).rejects.toThrow(/libonnxruntime_providers_tensorrt\.so/);
  });

  it('says the platform has no cuda provider at all on macOS', async () => {
    await expect(resolveDevice('cuda', machine({ platform: 'darwin' }))).rejects.toMatchObject({ missing: 'unsupported-platform' });
  });

  it('reports a provider whose libraries are present but fail to load', async () => {
    const error = await resolveDevice('cuda', machine({ files: cudaFiles })).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ missing: 'provider-libraries' });
    expect((error as Error).message).toMatch(/failed to load \(Failed to start cuda\)/);
  });

  it('auto falls back to the CPU and says why each better device was passed over', async () => {
    const choice = await resolveDevice('auto', machine({}));
    expect(choice.device).toBe('cpu');
    expect(choice.considered.map((check) => check.device)).toEqual(['cuda', 'webgpu', 'cpu']);
    expect(choice.reason).toMatch(/^auto picked cpu because cuda: the cuda provider libraries are not installed.*; webgpu: the Vulkan loader/);
  });

  it('auto prefers cuda, then webgpu, and never picks tensorrt by itself', async () => {
    const all = machine({ files: [...cudaFiles, '/ort/bin/libonnxruntime_providers_tensorrt.so', '/usr/lib/libvulkan.so.1'], starts: ['cpu', 'webgpu', 'cuda', 'tensorrt'] });
    expect((await resolveDevice('auto', all)).device).toBe('cuda');
    expect(all.probed).toEqual(['cuda']);
    const noCuda = machine({ files: ['/usr/lib/libvulkan.so.1'], starts: ['cpu', 'webgpu'] });
    const choice = await resolveDevice('auto', noCuda);
    expect(choice.device).toBe('webgpu');
    expect(choice.reason).toMatch(/auto picked webgpu because cuda:/);
  });

  it('refuses an unknown device name, listing the known ones', async () => {
    await expect(resolveDevice('metal' as DeviceRequest, machine({}))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(resolveDevice('metal' as DeviceRequest, machine({}))).rejects.toThrow('device: expected auto | cpu | webgpu | cuda | tensorrt, got "metal"');
  });
});
