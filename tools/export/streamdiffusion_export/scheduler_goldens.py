"""``scheduler-goldens``: what diffusers' ``LCMScheduler`` computes, for the TypeScript LCM schedule.

For each scheduler config in :data:`CASES` the golden file records

* ``betas`` and ``alphas_cumprod`` (float32, as the scheduler holds them) and ``final_alpha_cumprod``;
* ``schedules``: for several ``(num_inference_steps, strength)`` pairs, the timesteps after
  ``set_timesteps`` and, per timestep, ``alpha`` = √ᾱ_t, ``beta`` = √(1 − ᾱ_t) and the boundary
  scalings ``c_skip`` / ``c_out`` from ``get_scalings_for_boundary_condition_discrete``;
* ``stream``: StreamDiffusion's per-slot constants for a ``t_index_list`` (``timesteps[t_index]``
  and the same four values per slot);
* ``rejected``: step counts / strengths ``set_timesteps`` refuses, with diffusers' message.

Every float is computed the way StreamDiffusion's ``prepare()`` computes it: the timestep passed to
the scalings is an element of ``scheduler.timesteps`` (a 0-d int64 tensor), so the arithmetic is
float32, as is ``alphas_cumprod[t].sqrt()``. Floats are written as the exact decimal of the float32
value (a double that round-trips), so tests can compare bit for bit.

Two platform effects, recorded so a difference can be traced:

* torch computes ``torch.linspace`` (the linear and scaled_linear betas) differently depending on
  the CPU kernel it dispatches to: the AVX2/AVX512 builds fuse ``start + step * i`` into one FMA,
  the baseline build does not, and the two differ in the last bit of about one beta in ten. The
  file records ``torch.backends.cpu.get_cpu_capability()``.
* torch's x86 builds take float32 ``sqrt`` (and ``** 0.5``) from MKL's vector library, which is
  not correctly rounded (about one result in five is the other neighbour of the exact root). α, β
  and c_out therefore carry a one-ulp noise that depends on the CPU. For the configs in
  :data:`CORRECTLY_ROUNDED_SQRT_CASES` the file also holds ``correctly_rounded_sqrt``: the same
  diffusers code run with torch's float32 square root replaced by numpy's correctly rounded one,
  which an exact reimplementation must match bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import TOOL_NAME, __version__
from .configs import LCM_SCHEDULER_SETTINGS, NOISE_SCHEDULE_KEYS, SD15_SCHEDULER, SD_TURBO_SCHEDULER
from .environment import prepare_diffusers_import
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

#: Step counts tried for every config whose ``original_inference_steps`` is 50 (3 and 7 do not
#: divide 50, which is where the evenly spaced indices of newer diffusers differ from the old
#: ``[::-skipping_step]`` selection).
STEPS_50 = (1, 2, 3, 4, 7, 8, 50)

#: img2img strengths: ``int(original_steps * strength)`` truncates (0.58 * 50 = 28.999999999999996 → 28).
STRENGTHS_50 = ((4, 0.5), (7, 0.3), (3, 0.58), (2, 0.04))

#: StreamDiffusion's usual ``t_index_list`` values, with the step count they go with.
T_INDEX_LISTS_50 = ((50, (32, 45)), (50, (0, 16, 32, 45)), (4, (0, 1, 2, 3)), (1, (0,)), (3, (1, 2)), (7, (6,)))

#: ``(num_inference_steps, strength)`` pairs every 50-step config must refuse.
REJECTED_50 = ((51, 1.0), (8, 0.1), (1001, 1.0), (2, 0.02))


def _trained_betas() -> list[float]:
    """100 hand-made betas (doubles that are not float32 values, so the float32 cast is exercised)."""
    return [0.0001 + 0.0299 * (i / 99) ** 1.5 + 0.00007 * math.sin(i) for i in range(100)]


def _lcm_model_folder_config() -> dict[str, Any]:
    """The scheduler config ``convert`` writes into a model folder made from an SD 1.5 checkpoint."""
    kept = {key: SD15_SCHEDULER[key] for key in NOISE_SCHEDULE_KEYS if key in SD15_SCHEDULER}
    return {**kept, **LCM_SCHEDULER_SETTINGS}


@dataclass(frozen=True)
class SchedulerCase:
    """One scheduler config and what to record for it."""

    name: str
    #: Given to ``LCMScheduler.from_config`` (and, in the goldens, to the TypeScript schedule).
    config: dict[str, Any]
    #: ``set_timesteps(n)`` step counts.
    steps: tuple[int, ...] = ()
    #: ``set_timesteps(n, strength=s)`` pairs.
    strengths: tuple[tuple[int, float], ...] = ()
    #: ``(num_inference_steps, t_index_list)`` pairs for StreamDiffusion's per-slot constants.
    t_index_lists: tuple[tuple[int, tuple[int, ...]], ...] = ()
    #: ``(num_inference_steps, strength)`` pairs ``set_timesteps`` must refuse.
    rejected: tuple[tuple[int, float], ...] = ()


CASES: tuple[SchedulerCase, ...] = (
    # StreamDiffusion builds its scheduler as LCMScheduler.from_config(pipe.scheduler.config):
    # the checkpoint's own scheduler config, LCM's defaults for the rest (original steps 50).
    SchedulerCase("sd15", SD15_SCHEDULER, STEPS_50, STRENGTHS_50, T_INDEX_LISTS_50, REJECTED_50),
    SchedulerCase("sd-turbo", SD_TURBO_SCHEDULER, STEPS_50, STRENGTHS_50, T_INDEX_LISTS_50, REJECTED_50),
    SchedulerCase("model-folder-lcm", _lcm_model_folder_config(), STEPS_50, (), ((50, (32, 45)),), ((51, 1.0),)),
    SchedulerCase(
        "linear",
        {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "set_alpha_to_one": False},
        STEPS_50,
        ((4, 0.5),),
        ((50, (0, 16, 32, 45)),),
        ((51, 1.0),),
    ),
    SchedulerCase(
        "squaredcos-cap-v2", {"beta_schedule": "squaredcos_cap_v2"}, STEPS_50, ((4, 0.5),), ((50, (0, 16, 32, 45)),)
    ),
    SchedulerCase(
        "train100-original25",
        {"num_train_timesteps": 100, "original_inference_steps": 25, "beta_start": 0.001, "beta_end": 0.03},
        (1, 2, 3, 4, 7, 8, 25),
        ((4, 0.5), (5, 0.3)),
        ((25, (0, 8, 16, 24)), (8, (3, 7))),
        ((26, 1.0), (101, 1.0)),
    ),
    SchedulerCase(
        "timestep-scaling-0.7", {**SD15_SCHEDULER, "timestep_scaling": 0.7}, (1, 4, 7, 50), (), ((50, (32, 45)),)
    ),
    # k = 1: the grid is every timestep, 0 included (c_skip = 1, c_out = 0 there).
    SchedulerCase(
        "original1000",
        {**SD15_SCHEDULER, "original_inference_steps": 1000, "timestep_scaling": 1.5},
        (1, 3, 7, 333),
        ((3, 0.5),),
        ((1000, (0, 500, 999)),),
        ((1001, 1.0),),
    ),
    SchedulerCase(
        "trained-betas",
        {"num_train_timesteps": 100, "original_inference_steps": 20, "trained_betas": _trained_betas()},
        (1, 3, 4, 20),
        (),
        ((20, (5, 15)),),
    ),
    SchedulerCase(
        "rescale-zero-snr", {**SD15_SCHEDULER, "rescale_betas_zero_snr": True}, (1, 4, 7, 50), (), ((50, (0, 32, 45)),)
    ),
    # diffusers accepts this config and fails at set_timesteps; the TypeScript schedule refuses it up front.
    SchedulerCase(
        "original-exceeds-train", {"num_train_timesteps": 40, "original_inference_steps": 50}, rejected=((1, 1.0),)
    ),
)


#: Configs also recorded with a correctly rounded float32 sqrt (betas, ᾱ and the longest schedule).
CORRECTLY_ROUNDED_SQRT_CASES = ("sd15", "timestep-scaling-0.7", "rescale-zero-snr")


@contextlib.contextmanager
def _correctly_rounded_sqrt() -> Iterator[None]:
    """Within the block, ``Tensor.sqrt`` and ``Tensor ** 0.5`` round the exact root (numpy's sqrt)."""
    import numpy
    import torch

    original_sqrt, original_pow = torch.Tensor.sqrt, torch.Tensor.__pow__

    def sqrt(tensor: Any) -> Any:
        array = tensor.detach().numpy()
        return torch.from_numpy(numpy.asarray(numpy.sqrt(array), dtype=array.dtype)).reshape(tensor.shape)

    def power(tensor: Any, exponent: Any) -> Any:
        return sqrt(tensor) if isinstance(exponent, float) and exponent == 0.5 else original_pow(tensor, exponent)

    torch.Tensor.sqrt, torch.Tensor.__pow__ = sqrt, power  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.sqrt, torch.Tensor.__pow__ = original_sqrt, original_pow  # type: ignore[method-assign]


def _floats(values: list[Any]) -> list[float]:
    """float32 tensors → the doubles that equal them exactly (JSON round-trips doubles)."""
    return [float(value) for value in values]


def _per_timestep(scheduler: Any, timesteps: Any) -> dict[str, Any]:
    """What StreamDiffusion's ``prepare()`` derives from each timestep, in its float32 arithmetic."""
    alpha, beta, c_skip, c_out = [], [], [], []
    for timestep in timesteps:  # 0-d int64 tensors, as StreamDiffusion passes them
        alpha_prod = scheduler.alphas_cumprod[timestep]
        alpha.append(alpha_prod.sqrt())
        beta.append((1 - alpha_prod).sqrt())
        skip, out = scheduler.get_scalings_for_boundary_condition_discrete(timestep)
        c_skip.append(skip)
        c_out.append(out)
    for name, values in (("alpha", alpha), ("beta", beta), ("c_skip", c_skip), ("c_out", c_out)):
        dtypes = {str(value.dtype) for value in values}
        if dtypes - {"torch.float32"}:
            raise ValueError(f"{name} came out as {dtypes}; the goldens assume float32 throughout")
    return {
        "alpha": _floats(alpha),
        "beta": _floats(beta),
        "c_skip": _floats(c_skip),
        "c_out": _floats(c_out),
    }


def _record_case(spec: SchedulerCase) -> dict[str, Any]:
    """Everything the golden file holds for one config."""
    from diffusers import LCMScheduler

    name, config = spec.name, spec.config
    scheduler = LCMScheduler.from_config(config)
    resolved = {
        key: scheduler.config[key]
        for key in (
            "num_train_timesteps",
            "beta_schedule",
            "original_inference_steps",
            "set_alpha_to_one",
            "timestep_scaling",
            "rescale_betas_zero_snr",
        )
    }
    case: dict[str, Any] = {
        "name": name,
        "config": config,
        "resolved": resolved,
        "betas": encode_tensor(scheduler.betas.numpy()),
        "alphas_cumprod": encode_tensor(scheduler.alphas_cumprod.numpy()),
        "final_alpha_cumprod": float(scheduler.final_alpha_cumprod),
        "schedules": [],
        "stream": [],
        "rejected": [],
    }
    runs = [(count, 1.0) for count in spec.steps] + list(spec.strengths)
    for num_inference_steps, strength in runs:
        scheduler.set_timesteps(num_inference_steps, strength=strength)
        timesteps = list(scheduler.timesteps)
        case["schedules"].append(
            {
                "num_inference_steps": num_inference_steps,
                "strength": strength,
                "timesteps": [int(timestep) for timestep in timesteps],
                **_per_timestep(scheduler, timesteps),
            }
        )
    for num_inference_steps, t_index_list in spec.t_index_lists:
        scheduler.set_timesteps(num_inference_steps)
        sub_timesteps = [scheduler.timesteps[index] for index in t_index_list]
        case["stream"].append(
            {
                "num_inference_steps": num_inference_steps,
                "t_index_list": list(t_index_list),
                "timesteps": [int(timestep) for timestep in sub_timesteps],
                **_per_timestep(scheduler, sub_timesteps),
            }
        )
    if name in CORRECTLY_ROUNDED_SQRT_CASES:
        with _correctly_rounded_sqrt():
            exact = LCMScheduler.from_config(config)
            longest = max(spec.steps)
            exact.set_timesteps(longest)
            timesteps = list(exact.timesteps)
            case["correctly_rounded_sqrt"] = {
                "betas": encode_tensor(exact.betas.numpy()),
                "alphas_cumprod": encode_tensor(exact.alphas_cumprod.numpy()),
                "schedule": {
                    "num_inference_steps": longest,
                    "timesteps": [int(timestep) for timestep in timesteps],
                    **_per_timestep(exact, timesteps),
                },
            }
    for num_inference_steps, strength in spec.rejected:
        try:
            scheduler.set_timesteps(num_inference_steps, strength=strength)
        except ValueError as error:
            case["rejected"].append(
                {"num_inference_steps": num_inference_steps, "strength": strength, "diffusers_error": str(error)}
            )
        else:
            raise ValueError(f"{name}: diffusers accepted {num_inference_steps} steps at strength {strength}")
    return case


def make_scheduler_goldens(out: Path) -> dict[str, int]:
    """Writes the LCM scheduler goldens to ``out``; returns the number of cases and the file size."""
    prepare_diffusers_import()
    import diffusers
    import numpy
    import torch

    data = {
        "generator": f"{TOOL_NAME} {__version__} scheduler-goldens",
        "command": "PYTHONPATH=tools/export python3 -m streamdiffusion_export scheduler-goldens "
        "--out fixtures/goldens/lcm-scheduler.json.gz",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "numpy": numpy.__version__,
        },
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "sigma_data": 0.5,
        "cases": [_record_case(case) for case in CASES],
    }
    text = dumps_json(data)
    json.loads(text)  # the number-list compaction must leave valid JSON
    return {"cases": len(CASES), "bytes": write_text_maybe_gzip(out, text)}
