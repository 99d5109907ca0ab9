"""``controlnet-goldens``: ControlNet residuals and UNet outputs with them, from diffusers in PyTorch.

The reference is diffusers itself in float32 on the CPU: ``ControlNetModel`` for one ControlNet,
``MultiControlNetModel`` for two (each one's residuals times its ``conditioning_scale``, then summed
element-wise), and ``UNet2DConditionModel`` with ``down_block_additional_residuals`` /
``mid_block_additional_residual``. The same computation is then run through onnxruntime (CPU) on
the exported folders the way the runtime does it (ControlNet at scale 1, residuals scaled and summed
outside, UNet with residual inputs) and the largest differences are printed, recorded and held to
the tolerance of ``goldens``.

Fixed inputs, at latent 8x8 (64x64 images), as case ``batch2`` and its first item as ``batch1``:

* ``sample``: ``torch.randn([2, 4, 8, 8], generator=manual_seed(300))``, float32;
* ``timestep``: 999 and 499, float32 (the UNet's float timestep convention);
* ``encoder_hidden_states``: the model's text encoder (PyTorch) on ``GOLDEN_PROMPTS`` (the prompt and
  ``""``), ``last_hidden_state`` [2, 77, D], float32;
* control images, computed rather than stored (~200 KB as tensors): ControlNet ``j`` (in command-line
  order) gets, at flat channel-major index ``i = (c*H + y)*W + x`` of its [C, 64, 64] image,
  ``float32((((i + 65536*j) * 2654435761) mod 2**32) >> 24) / float32(255)``: an 8-bit image in
  [0, 1] as diffusers' control image processor gives one. Every batch item gets the same image (one
  frame's control image feeds every denoising step). The file records each image's sum and first
  values so a reimplementation can check itself.

Golden file layout::

    {
      "tool", "torch", "diffusers", "onnxruntime", "arch", "model", "model_dtype": "float32",
      "prompts": [...], "input_ids": int32 [2, 77], "latent_size": [8, 8], "image_size": [64, 64],
      "seeds": {"sample": 300},
      "controlnets": {name: {"conditioning_channels", "control_image_index", "control_image_sum",
                             "control_image_first"}},
      "control_image_formula": "...",
      "cases": {"batch1" | "batch2": {
          "inputs": {"sample", "timestep", "encoder_hidden_states"},
          "controlnet_residuals": {name: {"down_block_residual_0", ..., "mid_block_residual"}},
          "unet": {"none" | "micro-canny@1.0" | ... : {"controlnets": [{"name", "scale"}], "out_sample"}}
      }},
      "reference": "...", "onnxruntime_max_abs_diff": {case: {what: float}},
      "output_max_abs": {case: {what: float}}, "tolerance": {"abs": float}
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import TOOL_NAME, __version__
from .agreement import Agreement, cpu_session
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

# torch, diffusers and the modules that import them load in make_controlnet_goldens: the control
# image formula and the case list stay importable without them (unit tests on a numpy-only Python).

LATENT_SIZE = (8, 8)
TIMESTEPS = (999.0, 499.0)
SEEDS = {"sample": 300}
#: Multiplier of the Fibonacci hash behind the control images (2**32 / golden ratio).
CONTROL_IMAGE_HASH = 2654435761
#: Index offset between the control images of consecutive ControlNets.
CONTROL_IMAGE_STRIDE = 65536
CONTROL_IMAGE_FORMULA = (
    "value[c][y][x] = float32((((i + 65536*j) * 2654435761) mod 2**32) >> 24) / float32(255), "
    "i = (c*H + y)*W + x, j = control_image_index; the same [C,H,W] image for every batch item"
)
#: Conditioning scales of the UNet cases: the first ControlNet alone at two scales, then both summed.
SINGLE_SCALES = (1.0, 0.5)
MULTI_SCALES = (0.7, 0.4)


@dataclass(frozen=True)
class UNetCase:
    """One UNet call: which ControlNets (by position) at which scales; none = the plain UNet."""

    name: str
    controlnets: tuple[tuple[str, float], ...]


def control_image(channels: int, height: int, width: int, index: int) -> np.ndarray:
    """The control image of the ``index``-th ControlNet: [channels, height, width] float32 in [0, 1]."""
    flat = np.arange(channels * height * width, dtype=np.uint64) + np.uint64(CONTROL_IMAGE_STRIDE * index)
    pixels = ((flat * np.uint64(CONTROL_IMAGE_HASH)) % np.uint64(2**32)) >> np.uint64(24)
    return (pixels.astype(np.float32) / np.float32(255)).reshape(channels, height, width)


def unet_cases(names: list[str]) -> list[UNetCase]:
    """The UNet calls recorded for these ControlNets (in command-line order)."""
    cases = [UNetCase("none", ())]
    cases += [UNetCase(f"{names[0]}@{scale}", ((names[0], scale),)) for scale in SINGLE_SCALES]
    if len(names) > 1:
        pairs = tuple(zip(names[:2], MULTI_SCALES))
        cases.append(UNetCase("+".join(f"{name}@{scale}" for name, scale in pairs), pairs))
    return cases


def make_controlnet_goldens(
    checkpoint: Path, model_dir: Path, controlnets: list[tuple[Path, Path]], out_file: Path
) -> dict[str, float]:
    """Writes the golden file; returns the largest onnxruntime difference per case.

    ``controlnets`` holds (diffusers ControlNetModel folder, exported ControlNet folder) pairs, one or
    two. Raises RuntimeError when onnxruntime disagrees with PyTorch beyond the tolerance.
    """
    import onnxruntime
    import torch

    from .checkpoint import load_pipeline_modules, read_json
    from .controlnet import CONTROLNET_INFO_FILE, load_controlnet
    from .environment import prepare_diffusers_import
    from .export_onnx import residual_names
    from .goldens import GOLDEN_PROMPTS, RELATIVE_TOLERANCE, _nice_ceiling, _tokenize

    prepare_diffusers_import()
    import diffusers
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    if not 1 <= len(controlnets) <= 2:
        raise ValueError(f"give one or two --controlnet pairs, got {len(controlnets)}")
    export = read_json(model_dir / "model_index.json").get("streamdiffusion_export", {})
    if not export.get("controlnet_inputs"):
        raise ValueError(f"{model_dir} has no ControlNet inputs; export it with --controlnet-inputs")
    if export.get("dtype", "fp32") != "fp32":
        raise ValueError(f"{model_dir} is {export.get('dtype')}; ControlNet goldens are recorded for fp32 folders")
    modules = load_pipeline_modules(checkpoint)
    unet = modules.unet
    names = [folder.resolve().name for _, folder in controlnets]
    if len(set(names)) != len(names):
        raise ValueError(f"ControlNet folders need distinct names, got {names}")
    torch_controlnets = {name: load_controlnet(source) for name, (source, _) in zip(names, controlnets)}
    for _, folder in controlnets:
        info = read_json(folder / CONTROLNET_INFO_FILE)
        if info.get("dtype") != "fp32":
            raise ValueError(f"{folder} is {info.get('dtype')}; ControlNet goldens are recorded for fp32 folders")
    sessions = {name: cpu_session(folder / "model.onnx") for name, (_, folder) in zip(names, controlnets)}
    unet_session = cpu_session(model_dir / "unet" / "model.onnx")
    residual_count = len(torch_controlnets[names[0]].controlnet_down_blocks) + 1
    unet_inputs = [value.name for value in unet_session.get_inputs()]
    if unet_inputs[3:] != residual_names(residual_count - 1):
        raise ValueError(f"{model_dir}/unet takes {unet_inputs[3:]}; {names[0]} gives {residual_count} residuals")

    latent_h, latent_w = LATENT_SIZE
    image_h, image_w = latent_h * 8, latent_w * 8
    input_ids = _tokenize(model_dir / "tokenizer", GOLDEN_PROMPTS)
    with torch.no_grad():
        embeddings = modules.text_encoder(input_ids=input_ids.to(torch.int64)).last_hidden_state.float()
    sample = torch.randn(
        2, unet.config.in_channels, latent_h, latent_w, generator=torch.Generator().manual_seed(SEEDS["sample"])
    )
    timestep = torch.tensor(TIMESTEPS, dtype=torch.float32)
    images = {
        name: control_image(int(model.config.conditioning_channels), image_h, image_w, index)
        for index, (name, model) in enumerate(torch_controlnets.items())
    }

    cases: dict[str, Any] = {}
    agreement = Agreement(RELATIVE_TOLERANCE["float32"])
    for case_name, batch in (("batch1", 1), ("batch2", 2)):
        inputs = {"sample": sample[:batch], "timestep": timestep[:batch], "encoder_hidden_states": embeddings[:batch]}
        feeds = {key: value.numpy() for key, value in inputs.items()}
        conds = {name: torch.from_numpy(np.stack([image] * batch)) for name, image in images.items()}

        # (a), (e): every ControlNet's residuals at scale 1.
        residuals_torch: dict[str, list[np.ndarray]] = {}
        residuals_ort: dict[str, list[np.ndarray]] = {}
        for name, model in torch_controlnets.items():
            with torch.no_grad():
                down, mid = model(
                    inputs["sample"],
                    inputs["timestep"],
                    inputs["encoder_hidden_states"],
                    conds[name],
                    conditioning_scale=1.0,
                    return_dict=False,
                )
            residuals_torch[name] = [tensor.numpy() for tensor in (*down, mid)]
            residuals_ort[name] = sessions[name].run(None, {**feeds, "controlnet_cond": conds[name].numpy()})
            if len(residuals_torch[name]) != residual_count:
                raise ValueError(f"{name} gives {len(residuals_torch[name])} residuals, {names[0]} {residual_count}")
            for expected, actual in zip(residuals_torch[name], residuals_ort[name]):
                agreement.check(case_name, f"controlnet_residuals/{name}", expected, actual)

        # (b), (c), (d): the UNet without, with one and with two ControlNets.
        unet_outputs: dict[str, Any] = {}
        for unet_case in unet_cases(names):
            with torch.no_grad():
                if not unet_case.controlnets:
                    expected = unet(*inputs.values(), return_dict=False)[0]
                else:
                    used = [torch_controlnets[name] for name, _ in unet_case.controlnets]
                    scales = [scale for _, scale in unet_case.controlnets]
                    net = used[0] if len(used) == 1 else MultiControlNetModel(used)
                    down, mid = net(
                        inputs["sample"],
                        inputs["timestep"],
                        inputs["encoder_hidden_states"],
                        conds[unet_case.controlnets[0][0]]
                        if len(used) == 1
                        else [conds[name] for name, _ in unet_case.controlnets],
                        conditioning_scale=scales[0] if len(used) == 1 else scales,
                        return_dict=False,
                    )
                    expected = unet(
                        *inputs.values(),
                        down_block_additional_residuals=tuple(down),
                        mid_block_additional_residual=mid,
                        return_dict=False,
                    )[0]
            # onnxruntime: scale and sum outside the ControlNets, as the runtime does. Without ControlNets
            # the residual UNet gets all-zero residuals and must give the plain UNet's output.
            summed = [np.zeros_like(array) for array in residuals_torch[names[0]]]
            for name, scale in unet_case.controlnets:
                summed = [total + array * np.float32(scale) for total, array in zip(summed, residuals_ort[name])]
            residual_feeds = dict(zip(residual_names(residual_count - 1), summed))
            (actual,) = unet_session.run(["out_sample"], {**feeds, **residual_feeds})
            agreement.check(case_name, f"unet/{unet_case.name}", expected.numpy(), actual)
            unet_outputs[unet_case.name] = {
                "controlnets": [{"name": name, "scale": scale} for name, scale in unet_case.controlnets],
                "out_sample": encode_tensor(expected.numpy().astype(np.float32)),
            }
        cases[case_name] = {
            "inputs": {name: encode_tensor(array) for name, array in feeds.items()},
            "controlnet_residuals": {
                name: dict(zip(residual_names(residual_count - 1), (encode_tensor(a) for a in arrays)))
                for name, arrays in residuals_torch.items()
            },
            "unet": unet_outputs,
        }
        case_diffs = agreement.diffs[case_name]
        worst = max(case_diffs, key=lambda key: case_diffs[key])
        print(
            f"  {case_name}: onnxruntime vs pytorch max abs diff {case_diffs[worst]:.3g} ({worst}); "
            + ", ".join(f"{key} {value:.3g}" for key, value in case_diffs.items() if key.startswith("unet/"))
        )

    golden = {
        "tool": f"{TOOL_NAME} {__version__}",
        "torch": torch.__version__.split("+")[0],
        "diffusers": diffusers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "arch": export.get("arch"),
        "model": model_dir.resolve().name,
        "model_dtype": "float32",
        "prompts": list(GOLDEN_PROMPTS),
        "input_ids": encode_tensor(input_ids.numpy()),
        "latent_size": list(LATENT_SIZE),
        "image_size": [image_h, image_w],
        "seeds": SEEDS,
        "control_image_formula": CONTROL_IMAGE_FORMULA,
        "controlnets": {
            name: {
                "conditioning_channels": int(images[name].shape[0]),
                "control_image_index": index,
                "control_image_sum": float(images[name].astype(np.float64).sum()),
                "control_image_first": [float(value) for value in images[name].reshape(-1)[:8]],
            }
            for index, name in enumerate(names)
        },
        "reference": "pytorch float32 cpu: diffusers ControlNetModel / MultiControlNetModel, UNet2DConditionModel",
        "cases": cases,
        "onnxruntime_max_abs_diff": agreement.diffs,
        "output_max_abs": agreement.magnitudes,
        "tolerance": {"abs": _nice_ceiling(agreement.tolerance)},
    }
    write_text_maybe_gzip(out_file, dumps_json(golden))
    if agreement.failures:
        raise RuntimeError("onnxruntime does not reproduce PyTorch:\n  " + "\n  ".join(agreement.failures))
    return {case: max(values.values()) for case, values in agreement.diffs.items()}
