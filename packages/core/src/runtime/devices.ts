import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { DeviceUnavailableError, InvalidArgumentError, type MissingDeviceRequirement } from '../errors/errors.js';

/** Devices a runtime can be asked for. `auto` picks the best one this machine can run. */
export const DEVICE_REQUESTS = Object.freeze(['auto', 'cpu', 'webgpu', 'cuda', 'tensorrt'] as const);
/** A device request: a concrete device or `auto`. */
export type DeviceRequest = (typeof DEVICE_REQUESTS)[number];
/** A concrete execution device. */
export type Device = Exclude<DeviceRequest, 'auto'>;

/**
 * The order `auto` tries devices in. TensorRT is left out on purpose: from Node, onnxruntime passes
 * only `deviceId` to it, so it cannot keep an engine cache and rebuilds engines on every load.
 * It is used when asked for by name.
 */
export const AUTO_DEVICE_ORDER: readonly Device[] = Object.freeze(['cuda', 'webgpu', 'cpu']);

/** What we found out about one device. */
export interface DeviceCheck {
  readonly device: Device;
  readonly available: boolean;
  /** Why it can or cannot run, in words. */
  readonly reason: string;
  readonly missing?: MissingDeviceRequirement;
}

/** The device a runtime runs on, and why it was picked. */
export interface DeviceChoice {
  readonly device: Device;
  readonly reason: string;
  /** Every device looked at on the way, in order (one entry when a device was asked for by name). */
  readonly considered: readonly DeviceCheck[];
}

/** What device resolution needs from the machine; injected in tests. */
export interface DeviceEnvironment {
  readonly platform: NodeJS.Platform;
  readonly arch: string;
  /** True when a file exists (provider libraries, the Vulkan loader). */
  fileExists(path: string): boolean;
  /** The text of a file, or undefined (used for the dynamic linker's cache). */
  readText(path: string): string | undefined;
  /** Folder that holds onnxruntime-node's native libraries for this platform. */
  readonly providerFolder: string;
  readonly libraryPath: string | undefined;
  /** Creates a tiny session on the device; throws what onnxruntime throws. */
  probe(device: Device): Promise<void>;
}

const PROVIDER_LIBRARIES: Record<'cuda' | 'tensorrt', Record<string, readonly string[]>> = {
  cuda: {
    linux: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'],
    win32: ['onnxruntime_providers_shared.dll', 'onnxruntime_providers_cuda.dll'],
  },
  tensorrt: {
    linux: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so'],
    win32: ['onnxruntime_providers_shared.dll', 'onnxruntime_providers_tensorrt.dll'],
  },
};

const VULKAN_LIBRARY = 'libvulkan.so.1';
const VULKAN_FOLDERS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/lib/x86_64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
];

/** Folder of onnxruntime-node's native binaries for this process's platform. */
export function onnxruntimeProviderFolder(platform: string = process.platform, arch: string = process.arch): string {
  const packageJson = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return join(dirname(packageJson), 'bin', 'napi-v6', platform, arch);
}

/** The real machine, with a probe supplied by the caller (the worker, which owns onnxruntime). */
export function machineEnvironment(probe: (device: Device) => Promise<void>): DeviceEnvironment {
  return {
    platform: process.platform,
    arch: process.arch,
    fileExists: existsSync,
    readText(path) {
      try {
        return readFileSync(path, 'latin1');
      } catch {
        return undefined;
      }
    },
    providerFolder: onnxruntimeProviderFolder(),
    libraryPath: process.env.LD_LIBRARY_PATH,
    probe,
  };
}

function vulkanLoaderFound(environment: DeviceEnvironment): boolean {
  const folders = [...(environment.libraryPath?.split(delimiter) ?? []), ...VULKAN_FOLDERS].filter(Boolean);
  if (folders.some((folder) => environment.fileExists(join(folder, VULKAN_LIBRARY)))) return true;
  // The dynamic linker's cache lists every library it knows by name.
  return environment.readText('/etc/ld.so.cache')?.includes(VULKAN_LIBRARY) ?? false;
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n').find((line) => line.trim() !== '')?.trim() ?? message;
}

/** Checks one device: cheap file checks first, then a real tiny session on it. */
export async function checkDevice(device: Device, environment: DeviceEnvironment): Promise<DeviceCheck> {
  const unavailable = (missing: MissingDeviceRequirement, reason: string): DeviceCheck => ({
    device,
    available: false,
    missing,
    reason,
  });
  switch (device) {
    case 'cpu':
      break;
    case 'webgpu':
      if (environment.platform === 'linux' && !vulkanLoaderFound(environment)) {
        return unavailable(
          'vulkan-loader',
          `the Vulkan loader (${VULKAN_LIBRARY}) is not installed; WebGPU runs through Dawn on Vulkan here: install it (Debian/Ubuntu: apt-get install libvulkan1) along with your GPU's Vulkan driver`,
        );
      }
      break;
    case 'cuda':
    case 'tensorrt': {
      const libraries = PROVIDER_LIBRARIES[device][environment.platform];
      if (libraries === undefined || environment.arch !== 'x64') {
        return unavailable(
          'unsupported-platform',
          `onnxruntime-node has no ${device} provider for ${environment.platform}/${environment.arch}`,
        );
      }
      const absent = libraries.filter((library) => !environment.fileExists(join(environment.providerFolder, library)));
      if (absent.length > 0) {
        return unavailable(
          'provider-libraries',
          `the ${device} provider libraries are not installed (${absent.join(', ')} missing in ${environment.providerFolder}); onnxruntime-node's installer downloads them from NuGet when run with ONNXRUNTIME_NODE_INSTALL=cuda12: \`ONNXRUNTIME_NODE_INSTALL=cuda12 node ${join(environment.providerFolder, '..', '..', '..', '..', 'script', 'install.js')}\` (pnpm, and npm where install scripts need approval, do not run it on install); they also need CUDA 12${device === 'tensorrt' ? ' and TensorRT' : ''} on the machine`,
        );
      }
      break;
    }
    default: {
      const unknown: never = device;
      throw new InvalidArgumentError({ field: 'device', value: unknown, expected: DEVICE_REQUESTS.join(' | ') });
    }
  }
  try {
    await environment.probe(device);
  } catch (error) {
    const detail = firstLine(error);
    if (device === 'webgpu') {
      return unavailable('gpu-adapter', `no WebGPU adapter could be created (${detail}); is a GPU with a Vulkan driver present?`);
    }
    if (device === 'cpu') return unavailable('unknown', `the CPU provider failed to start (${detail})`);
    return unavailable('provider-libraries', `the ${device} provider failed to load (${detail})`);
  }
  return {
    device,
    available: true,
    reason: device === 'cpu' ? 'the CPU provider always runs' : `a ${device} session started on this machine`,
  };
}

/**
 * Resolves a device request. A named device that cannot run raises {@link DeviceUnavailableError}
 * saying what is missing; `auto` tries {@link AUTO_DEVICE_ORDER} and reports what it picked and why.
 */
export async function resolveDevice(request: DeviceRequest, environment: DeviceEnvironment): Promise<DeviceChoice> {
  if (!(DEVICE_REQUESTS as readonly string[]).includes(request)) {
    throw new InvalidArgumentError({ field: 'device', value: request, expected: DEVICE_REQUESTS.join(' | ') });
  }
  if (request !== 'auto') {
    const check = await checkDevice(request, environment);
    if (!check.available) {
      throw new DeviceUnavailableError({
        device: request,
        missing: check.missing ?? 'unknown',
        message: `device "${request}" cannot run: ${check.reason}`,
      });
    }
    return { device: request, reason: `asked for by name; ${check.reason}`, considered: [check] };
  }
  const considered: DeviceCheck[] = [];
  for (const device of AUTO_DEVICE_ORDER) {
    const check = await checkDevice(device, environment);
    considered.push(check);
    if (check.available) {
      const skipped = considered
        .filter((other) => !other.available)
        .map((other) => `${other.device}: ${other.reason}`);
      const reason =
        skipped.length === 0
          ? `auto picked ${device}, the first choice (${check.reason})`
          : `auto picked ${device} because ${skipped.join('; ')}`;
      return { device, reason, considered };
    }
  }
  throw new DeviceUnavailableError({
    device: 'auto',
    missing: 'unknown',
    message: `no device can run: ${considered.map((check) => `${check.device}: ${check.reason}`).join('; ')}`,
  });
}
