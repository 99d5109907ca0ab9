"""``randn-goldens``: what ``torch.randn`` on the CPU draws for given seeds and shapes.

The Node.js runtime reproduces ``torch.randn(shape, generator=torch.Generator().manual_seed(seed),
dtype=torch.float32)`` bit for bit (``@streamdiffusion/core``'s ``torchRandn``), so that a seed gives
the same latents as in Python. This file records the reference:

* ``cases``: every seed x shape, the whole float32 tensor (tensor JSON: base64 little-endian);
* ``large``: ``[1, 4, 64, 64]`` (an SD latent of 512x512) per seed, kept small: the sha256 of its
  float32 little-endian bytes, its float64 sum and the bit patterns of a few sampled elements;
* ``sequences``: successive calls on ONE generator. Below 16 elements torch draws pairs of normals
  in double precision and caches the second one on the generator; from 16 elements on it uses a
  separate vectorised path that neither reads nor clears that cache. The sequences cover both
  orders (a short call, a long one, then a short one that returns the cached sample).

torch's CPU kernel depends on the machine: x86-64 builds with AVX2 (also used on AVX-512 CPUs)
use a polynomial log/sin/cos (``avx_mathfun.h``) for tensors of 16 or more elements; other builds
(``ATEN_CPU_CAPABILITY=default``, ARM) call libm and differ in the last bits. The file records the
capability it was made with; make it on x86-64 Linux with the official wheel.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Any

from . import TOOL_NAME, __version__
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

#: Seeds: small, typical, the int32 edge, one above 2**32 (torch seeds mt19937 with the low 32 bits only).
SEEDS: tuple[int, ...] = (0, 1, 42, 2**31 - 1, 2**32 + 5, 123456789)

#: Shapes around the 16-element boundary of torch's two code paths and its 16-element blocks.
SHAPES: tuple[tuple[int, ...], ...] = (
    (1,),
    (2,),
    (3,),
    (15,),
    (16,),
    (17,),
    (31,),
    (32,),
    (33,),
    (1, 4, 8, 8),
    (2, 4, 8, 12),
)

#: Recorded by hash and samples only (65536 bytes a seed in full).
LARGE_SHAPE: tuple[int, ...] = (1, 4, 64, 64)

#: Successive calls on one generator: (seed, shapes of the calls in order).
SEQUENCES: tuple[tuple[int, tuple[tuple[int, ...], ...]], ...] = (
    (0, ((3,), (20,), (1,))),
    (42, ((17,), (5,), (16,), (1,))),
    (1, ((1, 4, 8, 8), (1, 4, 8, 8))),
    (123456789, ((0,), (2,), (33,), (15,), (2,))),
    (2**31 - 1, ((1,), (16,), (1,), (1, 4, 64, 64), (3,))),
)

#: How many elements of each large tensor are recorded as bit patterns.
SAMPLE_COUNT = 64


def _randn(generator: Any, shape: tuple[int, ...]) -> Any:
    import torch

    return torch.randn(shape, generator=generator, dtype=torch.float32)


def _sample_indices(numel: int) -> list[int]:
    """The first and last 8 elements (the tail block torch recomputes) and evenly spread ones between."""
    spread = [(numel * step) // (SAMPLE_COUNT - 16) + 5 for step in range(SAMPLE_COUNT - 16)]
    return sorted({*range(8), *spread, *range(numel - 8, numel)})


def _bits_hex(values: Any) -> list[str]:
    import numpy as np

    return [f"{int(bits):08x}" for bits in np.asarray(values, dtype="<f4").view("<u4")]


def _large_record(tensor: Any) -> dict[str, Any]:
    array = tensor.contiguous().numpy().astype("<f4")
    flat = array.reshape(-1)
    indices = _sample_indices(flat.size)
    return {
        "dims": list(array.shape),
        "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
        "sum": float(flat.astype("float64").sum()),
        "sample_indices": indices,
        "sample_bits": _bits_hex(flat[indices]),
    }


def _sequence_call(tensor: Any) -> dict[str, Any]:
    if tensor.numel() > 4096:
        return _large_record(tensor)
    return encode_tensor(tensor.contiguous().numpy())


def make_randn_goldens(out_file: Path) -> dict[str, int]:
    """Writes the torch.randn golden file; returns counts of what it recorded."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    machine = platform.machine()
    if capability not in ("AVX2", "AVX512") or machine not in ("x86_64", "AMD64"):
        print(
            f"warning: CPU capability {capability} on {machine}: torch takes its libm path here, "
            "not the AVX2 path the runtime reproduces; these goldens will not match it"
        )
    golden: dict[str, Any] = {
        "tool": f"{TOOL_NAME} {__version__}",
        "torch": torch.__version__,
        "cpu_capability": capability,
        "platform": f"{platform.system()} {machine}",
        "call": "torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)",
        "cases": [],
        "large": [],
        "sequences": [],
    }
    for seed in SEEDS:
        for shape in SHAPES:
            tensor = _randn(torch.Generator().manual_seed(seed), shape)
            golden["cases"].append({"seed": seed, "shape": list(shape), "tensor": encode_tensor(tensor.numpy())})
        tensor = _randn(torch.Generator().manual_seed(seed), LARGE_SHAPE)
        golden["large"].append({"seed": seed, "shape": list(LARGE_SHAPE), **_large_record(tensor)})
    for seed, shapes in SEQUENCES:
        generator = torch.Generator().manual_seed(seed)
        calls = [{"shape": list(shape), "result": _sequence_call(_randn(generator, shape))} for shape in shapes]
        golden["sequences"].append({"seed": seed, "calls": calls})
    written = write_text_maybe_gzip(out_file, dumps_json(golden))
    return {
        "cases": len(golden["cases"]),
        "large": len(golden["large"]),
        "sequences": len(golden["sequences"]),
        "bytes": written,
    }
