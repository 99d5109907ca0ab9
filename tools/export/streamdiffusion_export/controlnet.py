"""``controlnet``: a diffusers ControlNetModel, or a random one of a known arch, to a ControlNet folder.

Folder layout::

    model.onnx        inputs  sample [batch,4,height,width], timestep [batch] (model float dtype),
                              encoder_hidden_states [batch,sequence,D] (the 77 text tokens),
                              controlnet_cond [batch,C,image_height,image_width] (image = 8 x latent, in [0,1])
                      outputs down_block_residual_0 ... down_block_residual_11, mid_block_residual
                              (SD 1.5/2.1 layout), at conditioning scale 1: the runtime scales and sums
    config.json       the ControlNetModel config (diffusers)
    controlnet.json   what the runtime needs without parsing the graph: conditioning_channels, dtype,
                      arch, residual count, and how the file was made

``controlnet_cond`` is what diffusers' control image processor gives the model: RGB in [0, 1], not
normalised to [-1, 1]. A config with ``controlnet_conditioning_channel_order: "bgr"`` flips the
channels inside the exported graph, exactly as ``ControlNetModel.forward`` does, so the input is
always fed in RGB order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import _from_pretrained, read_json, write_json
from .configs import controlnet_config, detect_arch, get_arch
from .convert import _save_module_config, export_info, export_reported, resolve_device
from .environment import prepare_diffusers_import
from .export_onnx import DTYPES, ExportResult, ExportShapes, controlnet_spec

#: The file next to model.onnx that describes the ControlNet.
CONTROLNET_INFO_FILE = "controlnet.json"


@dataclass
class ControlNetExportOptions:
    """Options of one ControlNet export."""

    out_dir: Path
    dtype: str = "fp32"
    shapes: ExportShapes = field(default_factory=ExportShapes)
    arch: str | None = None
    device: str = "auto"
    exporter: str = "auto"
    attention: str = "plain"
    short_names: bool = False
    #: Smallest graph bookkeeping (``export_onnx.compact_graph``), for fixtures.
    compact_graph: bool = False
    #: How the weights came about, recorded in controlnet.json (no machine paths).
    source: dict[str, Any] = field(default_factory=dict)


def load_controlnet(folder: Path) -> torch.nn.Module:
    """Loads a diffusers ControlNetModel folder (config.json + weights) in float32 on the CPU."""
    prepare_diffusers_import()
    from diffusers import ControlNetModel

    config_path = folder / "config.json"
    class_name = read_json(config_path).get("_class_name")
    if class_name != "ControlNetModel":
        raise ValueError(f"{config_path} describes a {class_name!r}; expected a diffusers ControlNetModel")
    controlnet = _from_pretrained(ControlNetModel, folder, torch_dtype=torch.float32)
    controlnet.eval()
    controlnet.requires_grad_(False)
    return controlnet


def zero_convolutions(controlnet: torch.nn.Module) -> list[torch.nn.Module]:
    """The convolutions diffusers initialises to zero ("zero convolutions").

    They are the conditioning embedding's last convolution and the 1x1 convolution after every
    residual (down blocks and mid block).
    """
    return [
        controlnet.controlnet_cond_embedding.conv_out,
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]


def build_random_controlnet(arch_name: str, conditioning_channels: int, seed: int) -> torch.nn.Module:
    """A ControlNetModel for the arch's UNet (``ControlNetModel.from_unet``'s config) with random weights.

    Every weight gets PyTorch's default initialisation from ``seed``, as the random UNets of
    ``random-init`` do, the zero convolutions included (re-initialised from ``seed + 1``): with
    diffusers' zeros there, an untrained ControlNet's residuals would all be zero and a test could
    not tell a wired-up ControlNet from a missing one.
    """
    prepare_diffusers_import()
    from diffusers import ControlNetModel

    arch = get_arch(arch_name)
    config = controlnet_config(arch.unet, conditioning_channels, arch.controlnet_embedding_channels)
    torch.manual_seed(seed)
    controlnet = ControlNetModel(**config)
    torch.manual_seed(seed + 1)
    for convolution in zero_convolutions(controlnet):
        convolution.reset_parameters()
    controlnet.eval()
    controlnet.requires_grad_(False)
    return controlnet


def _info(
    controlnet: torch.nn.Module, options: ControlNetExportOptions, arch: str, result: ExportResult
) -> dict[str, Any]:
    config = controlnet.config
    return {
        **export_info(
            arch,
            options.dtype,
            options.shapes,
            [result],
            options.attention,
            options.short_names,
            options.compact_graph,
        ),
        "conditioning_channels": int(config.conditioning_channels),
        "conditioning_channel_order": config.controlnet_conditioning_channel_order,
        "conditioning_embedding_out_channels": list(config.conditioning_embedding_out_channels),
        "control_image_range": [0, 1],
        "down_block_residuals": len(controlnet.controlnet_down_blocks),
        # The residuals are at conditioning scale 1; the runtime multiplies them by each ControlNet's scale.
        "applies_conditioning_scale": False,
        "source": options.source,
    }


def export_controlnet(controlnet: torch.nn.Module, options: ControlNetExportOptions) -> ExportResult:
    """Exports ``controlnet`` (float32 module) into a ControlNet folder; returns the ONNX result."""
    if options.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
    options.shapes.validate()
    dtype = DTYPES[options.dtype]
    device = resolve_device(options.device)
    arch = options.arch or detect_arch(dict(controlnet.config))
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"exporting ControlNet -> {out} (arch {arch}, {controlnet.config.conditioning_channels} conditioning "
        f"channels, {options.dtype}, {options.attention} attention, {device})"
    )
    controlnet.to(device=device, dtype=dtype)
    shapes = options.shapes
    result = export_reported(
        lambda: controlnet_spec(controlnet, shapes, dtype, device, attention=options.attention),
        out,
        options.exporter,
        shapes.static,
        options.short_names,
        device,
        options.compact_graph,
    )
    _save_module_config(controlnet, out)
    write_json(out / CONTROLNET_INFO_FILE, _info(controlnet, options, arch, result))
    return result
