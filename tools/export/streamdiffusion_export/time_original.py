"""``time-original``: how fast the Python original (cumulo-autumn/StreamDiffusion) runs img2img on a
checkpoint, in PyTorch eager on CUDA, so ``pnpm bench`` numbers can be divided by it on the same GPU.

Runs the original's own ``StreamDiffusion`` class (its source brought alongside, never committed)
on the same inputs as ``pnpm bench``: an RGB uint8 frame on the host becomes a [0, 1] tensor,
``stream(frame)`` runs (preprocess, encode, UNet, decode; it synchronizes the GPU itself), and the
output becomes an RGB uint8 array on the host (``postprocess_image(..., "np")``; PIL may be absent).
Prints fps and latency for the call alone and with the output on the host; JSON with ``--json``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Moving RGB uint8 patterns [H, W, 3] (the pattern ``pnpm bench`` feeds)."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.stack([(x + index * 3) & 255, (y + index * 5) & 255, ((x ^ y) + index * 7) & 255], axis=-1).astype(np.uint8)
        for index in range(count)
    ]


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] → float [1, 3, H, W] in [0, 1], as the original's image processor takes it."""
    return torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div(255)


def time_original(
    checkpoint: Path,
    streamdiffusion_src: Path,
    *,
    size: int = 512,
    t_index_list: list[int] | None = None,
    cfg_type: str = "none",
    frames: int = 100,
    warmup: int = 10,
    dtype: str = "fp16",
) -> dict[str, Any]:
    """Times ``frames`` calls after ``warmup``; returns the numbers."""
    from .stream_goldens import load_original

    if not torch.cuda.is_available():
        raise SystemExit("time-original needs a CUDA GPU")
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    steps = t_index_list or [45]
    StreamDiffusion, pipe = load_original(checkpoint, streamdiffusion_src, torch_dtype, "cuda")
    from streamdiffusion.image_utils import postprocess_image  # importable once load_original added its source
    stream = StreamDiffusion(pipe, t_index_list=steps, torch_dtype=torch_dtype, width=size, height=size, cfg_type=cfg_type)
    stream.prepare("a watercolor lighthouse at dusk", num_inference_steps=50, guidance_scale=1.2, seed=2)
    images = _frames(size, size, 8)

    for index in range(warmup):
        stream(_to_tensor(images[index % len(images)]))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()

    def measure(with_output: bool) -> list[float]:
        latencies = []
        for index in range(frames):
            started = time.perf_counter()
            out = stream(_to_tensor(images[index % len(images)]))  # synchronizes the GPU itself
            if with_output:
                array = postprocess_image(out, output_type="np")
                (np.asarray(array) * 255).round().astype(np.uint8)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    results: dict[str, Any] = {}
    for name, with_output in (("call", False), ("call+output", True)):
        latencies = sorted(measure(with_output))
        mean = statistics.fmean(latencies)
        results[name] = {
            "fps": 1000 / mean,
            "mean_ms": mean,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        }
    return {
        "original": "cumulo-autumn/StreamDiffusion (PyTorch eager)",
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "settings": {"size": size, "t_index_list": steps, "cfg_type": cfg_type, "dtype": dtype, "frames": frames, "warmup": warmup},
        "results": results,
        "peak_cuda_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
    }


def main(args: Any) -> int:
    """CLI entry: prints the timings (JSON with --json)."""
    result = time_original(
        Path(args.checkpoint),
        Path(args.streamdiffusion_src),
        size=args.size,
        t_index_list=[int(step) for step in args.steps.split(",")],
        cfg_type=args.cfg,
        frames=args.frames,
        warmup=args.warmup,
        dtype=args.dtype,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        settings = result["settings"]
        print(f"original  {result['original']}, torch {result['torch']}, {result['gpu']}")
        print(f"settings  {settings['size']}x{settings['size']}, t_index_list {settings['t_index_list']}, cfg {settings['cfg_type']}, {settings['dtype']}")
        for name, numbers in result["results"].items():
            print(f"{name:<12} {numbers['fps']:.2f} fps, mean {numbers['mean_ms']:.2f} ms, p50 {numbers['p50_ms']:.2f} ms, p99 {numbers['p99_ms']:.2f} ms")
        print(f"peak CUDA memory {result['peak_cuda_memory_mb']:.0f} MB")
    return 0
