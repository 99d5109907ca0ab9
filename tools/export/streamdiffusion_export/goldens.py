"""``goldens``: fixed inputs and PyTorch reference outputs for every ONNX model of a model folder.

The reference is always the PyTorch modules of the diffusers checkpoint run in float32 on the
CPU. Float inputs are stored in the model folder's dtype (float16 for an fp16 export, so the
runtime can feed them as they are) and the float32 reference sees exactly the same values.
Outputs are float32. Every model is also run through onnxruntime (CPU) on the same inputs, and on
their first batch item alone (proving the batch axis is dynamic); the largest absolute
differences are printed and recorded.

Golden file layout::

    {
      "tool": "streamdiffusion_export 0.1.0", "torch": "2.11.0", "onnxruntime": "1.30.0",
      "arch": ..., "model_dtype": "float32" | "float16", "vae": "kl" | "taesd",
      "models": {
        "<subfolder>": {
          "inputs":  {name: {"dtype", "dims", "data"}},
          "outputs": {name: {"dtype": "float32", "dims", "data"}},
          "reference": "pytorch float32 cpu",
          "onnxruntime_max_abs_diff": {output: float}, "output_max_abs": {output: float},
          "tolerance": {"abs": float}
        }
      }
    }
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import TOOL_NAME, __version__
from .checkpoint import load_pipeline_modules, read_json
from .export_onnx import (
    DTYPES,
    TextEncoderForExport,
    UNetForExport,
    VaeDecoderForExport,
    VaeEncoderForExport,
)
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

#: Prompts fed to the text encoder (batch 2: a prompt and the empty unconditional prompt).
GOLDEN_PROMPTS = ("a photo of a cat wearing a tiny wizard hat, highly detailed", "")

#: UNet latent size: non-square, and not the export's tracing size, to prove dynamic shapes.
UNET_LATENT_SIZE = (16, 24)
#: VAE image size in pixels (latent 4x6).
VAE_IMAGE_SIZE = (32, 48)
UNET_TIMESTEPS = (999.0, 499.0)
BATCH = 2
SEEDS = {"unet_sample": 100, "unet_encoder_hidden_states": 101, "vae_encoder": 102, "vae_decoder": 103}

#: Suggested comparison tolerance, relative to the largest |value| of each reference output.
#: fp32 exports agree with PyTorch to ~1e-6 relative on the CPU; GPUs and fp16 need more.
RELATIVE_TOLERANCE = {"float32": 1e-3, "float16": 2e-2}


@dataclass
class GoldenCase:
    """One model's inputs (in model dtype) and the float32 module that produces its reference."""

    name: str
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    output_names: list[str]


def _randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def _tokenize(tokenizer_dir: Path, prompts: tuple[str, ...]) -> torch.Tensor:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    encoded = tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True)
    return torch.tensor(encoded["input_ids"], dtype=torch.int32)


def build_cases(checkpoint: Path, model_dir: Path, taesd: Path | None, dtype: torch.dtype) -> list[GoldenCase]:
    """Loads the float32 modules and builds the fixed inputs, rounded to the model dtype."""
    modules = load_pipeline_modules(checkpoint, taesd=taesd)
    index = read_json(model_dir / "model_index.json")
    if index.get("streamdiffusion_export", {}).get("controlnet_inputs"):
        raise ValueError(f"{model_dir}'s UNet takes ControlNet residuals; record its goldens with controlnet-goldens")
    expected_vae = index.get("streamdiffusion_export", {}).get("vae")
    if expected_vae and expected_vae != modules.vae_kind:
        raise ValueError(
            f"{model_dir} was exported with the {expected_vae} VAE but {checkpoint} provides {modules.vae_kind}; "
            "pass --taesd <AutoencoderTiny folder> when the model folder uses TAESD"
        )

    def rounded(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(dtype)

    unet_config = modules.unet.config
    latent_h, latent_w = UNET_LATENT_SIZE
    image_h, image_w = VAE_IMAGE_SIZE
    latent_channels = modules.vae.config.latent_channels
    return [
        GoldenCase(
            name="text_encoder",
            module=TextEncoderForExport(modules.text_encoder),
            inputs={"input_ids": _tokenize(model_dir / "tokenizer", GOLDEN_PROMPTS)},
            output_names=["last_hidden_state", "pooler_output"],
        ),
        GoldenCase(
            name="unet",
            module=UNetForExport(modules.unet),
            inputs={
                "sample": rounded(_randn((BATCH, unet_config.in_channels, latent_h, latent_w), SEEDS["unet_sample"])),
                "timestep": rounded(torch.tensor(UNET_TIMESTEPS, dtype=torch.float32)),
                "encoder_hidden_states": rounded(
                    _randn((BATCH, 77, unet_config.cross_attention_dim), SEEDS["unet_encoder_hidden_states"])
                ),
            },
            output_names=["out_sample"],
        ),
        GoldenCase(
            name="vae_encoder",
            module=VaeEncoderForExport(modules.vae),
            inputs={
                "sample": rounded(
                    torch.rand(
                        BATCH, 3, image_h, image_w, generator=torch.Generator().manual_seed(SEEDS["vae_encoder"])
                    )
                    * 2
                    - 1
                )
            },
            output_names=["latent_sample"],
        ),
        GoldenCase(
            name="vae_decoder",
            module=VaeDecoderForExport(modules.vae),
            inputs={
                "latent_sample": rounded(
                    _randn((BATCH, latent_channels, image_h // 8, image_w // 8), SEEDS["vae_decoder"])
                )
            },
            output_names=["sample"],
        ),
    ]


def _reference_outputs(case: GoldenCase) -> dict[str, np.ndarray]:
    inputs = [value.float() if value.is_floating_point() else value for value in case.inputs.values()]
    with torch.no_grad():
        outputs = case.module(*inputs)
    if torch.is_tensor(outputs):
        outputs = (outputs,)
    return {name: output.detach().float().cpu().numpy() for name, output in zip(case.output_names, outputs)}


def _onnxruntime_outputs(session: Any, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    results = session.run(names, inputs)
    return {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, results)}


def _nice_ceiling(value: float) -> float:
    """Rounds up to one significant digit (3.2e-4 -> 4e-4) for readable tolerances."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value))
    return math.ceil(value / 10**exponent) * 10**exponent


def make_goldens(checkpoint: Path, model_dir: Path, out_file: Path, taesd: Path | None = None) -> dict[str, Any]:
    """Writes the golden file and returns the per-model max abs differences against onnxruntime.

    Raises RuntimeError when onnxruntime disagrees with PyTorch beyond the suggested tolerance.
    """
    import onnxruntime

    index = read_json(model_dir / "model_index.json")
    export_info = index.get("streamdiffusion_export", {})
    dtype_key = export_info.get("dtype", "fp32")
    dtype = DTYPES[dtype_key]
    dtype_name = "float16" if dtype == torch.float16 else "float32"
    cases = build_cases(checkpoint, model_dir, taesd, dtype)

    models: dict[str, Any] = {}
    report: dict[str, float] = {}
    failures: list[str] = []
    for case in cases:
        reference = _reference_outputs(case)
        feeds = {name: value.cpu().numpy() for name, value in case.inputs.items()}
        session = onnxruntime.InferenceSession(
            str(model_dir / case.name / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        actual = _onnxruntime_outputs(session, feeds, case.output_names)
        first_only = _onnxruntime_outputs(
            session, {name: value[:1] for name, value in feeds.items()}, case.output_names
        )
        diffs: dict[str, float] = {}
        magnitudes: dict[str, float] = {}
        tolerance = 0.0
        for name in case.output_names:
            expected = reference[name]
            if actual[name].shape != expected.shape:
                raise RuntimeError(f"{case.name}.{name}: onnxruntime shape {actual[name].shape} != {expected.shape}")
            diff = float(np.max(np.abs(actual[name] - expected)))
            diff_first = float(np.max(np.abs(first_only[name] - expected[:1])))
            diffs[name] = max(diff, diff_first)
            magnitudes[name] = float(np.max(np.abs(expected)))
            allowed = RELATIVE_TOLERANCE[dtype_name] * max(magnitudes[name], 1.0)
            tolerance = max(tolerance, allowed)
            if not np.isfinite(diffs[name]) or diffs[name] > allowed:
                failures.append(f"{case.name}.{name}: max abs diff {diffs[name]:.3g} > {allowed:.3g}")
        report[case.name] = max(diffs.values())
        print(
            f"  {case.name}: onnxruntime vs pytorch max abs diff "
            + ", ".join(f"{name} {value:.3g} (|ref| max {magnitudes[name]:.3g})" for name, value in diffs.items())
        )
        models[case.name] = {
            "inputs": {name: encode_tensor(value) for name, value in feeds.items()},
            "outputs": {name: encode_tensor(reference[name].astype(np.float32)) for name in case.output_names},
            "reference": "pytorch float32 cpu",
            "onnxruntime_max_abs_diff": diffs,
            "output_max_abs": magnitudes,
            "tolerance": {"abs": _nice_ceiling(tolerance)},
        }

    golden = {
        "tool": f"{TOOL_NAME} {__version__}",
        "torch": torch.__version__.split("+")[0],
        "onnxruntime": onnxruntime.__version__,
        "arch": export_info.get("arch"),
        "model_dtype": dtype_name,
        "vae": export_info.get("vae"),
        "prompts": list(GOLDEN_PROMPTS),
        "seeds": SEEDS,
        "models": models,
    }
    write_text_maybe_gzip(out_file, dumps_json(golden))
    if failures:
        raise RuntimeError("onnxruntime does not reproduce PyTorch:\n  " + "\n  ".join(failures))
    return report


def require_fixture_weights(unet: Any, fixture_goldens: Path) -> dict[str, torch.Tensor]:
    """Proves ``unet`` (a diffusers UNet in float32) holds a fixture's weights: its output on the
    fixture's golden UNet inputs must be within 1e-4 of the golden. Returns those inputs; exits
    otherwise. Used by the recorders that run a checkpoint beside a committed fixture."""
    import json

    from .tensor_json import decode_tensor, read_text_maybe_gzip

    golden = json.loads(read_text_maybe_gzip(fixture_goldens))["models"]["unet"]
    inputs = {name: torch.from_numpy(decode_tensor(value).astype(np.float32)) for name, value in golden["inputs"].items()}
    with torch.no_grad():
        actual = unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"], return_dict=False)[0]
    difference = float(np.abs(actual.numpy() - decode_tensor(golden["outputs"]["out_sample"])).max())
    print(f"checkpoint vs fixture UNet golden: max abs diff {difference:.3g}")
    if difference > 1e-4:
        raise SystemExit("the checkpoint does not hold the fixture's weights")
    return inputs
