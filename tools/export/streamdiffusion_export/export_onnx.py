"""ONNX export of the Stable Diffusion sub-models and ControlNets, with Optimum's input and output names.

Each sub-model is wrapped in a small ``torch.nn.Module`` whose ``forward`` takes exactly the ONNX
inputs and returns exactly the ONNX outputs:

============  ======================================  ===========================================
folder        inputs                                  outputs
============  ======================================  ===========================================
unet          sample [batch,4,height,width],          out_sample [batch,4,height,width]
              timestep [batch] (model float dtype),
              encoder_hidden_states [batch,seq,D]
              (+ with an IP-Adapter:
              ip_adapter_scale [batch,L]; seq is
              77 text + N image tokens)
              (+ with ControlNet inputs:
              down_block_residual_0..11,
              mid_block_residual)
vae_encoder   sample [batch,3,height,width] in [-1,1] latent_sample [batch,4,h/8,w/8] (unscaled;
                                                      KL: the distribution mean)
vae_decoder   latent_sample [batch,4,height,width]    sample [batch,3,8h,8w], nominally [-1,1]
              (unscaled)
text_encoder  input_ids [batch,77] int32              last_hidden_state [batch,77,D],
                                                      pooler_output [batch,D]
controlnet    sample, timestep, encoder_hidden_states down_block_residual_0..11,
              (as the UNet), controlnet_cond          mid_block_residual (conditioning scale 1;
              [batch,C,8h,8w] in [0,1]                the runtime scales)
image_encoder pixel_values [batch,3,S,S] (CLIP-       image_embeds [batch,P],
              normalised)                             penultimate_hidden_states [batch,T,H]
image_        image_embeds [batch,P] (regular) or     image_tokens [batch,N,D] (N = 4 regular,
projection    [batch,T,H] (Plus)                      16 Plus)
============  ======================================  ===========================================

Residual dims: [batch, channels, height, width] at the latent size (``height``/``width``) or
``height_div_2``/``width_div_2``, ``_div_4``, ``_div_8`` below it.

The TorchScript exporter (``dynamo=False``, opset 17) is used where torch still has it; the
dynamo exporter is the fallback. Models over 2 GB keep their weights in one ``model.onnx_data``
file next to ``model.onnx``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: ONNX opset of every TorchScript export.
OPSET = 17
#: Opset of the dynamo exporter (the fallback); it cannot write opset 17 correctly.
DYNAMO_OPSET = 18

#: Above this many bytes of weights a model is saved with external data (protobuf caps a file
#: at 2 GiB; 2 GB leaves room for the graph itself).
EXTERNAL_DATA_THRESHOLD = 2_000_000_000
EXTERNAL_DATA_FILE = "model.onnx_data"

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}

#: ONNX tensor element type names as written into golden files.
TORCH_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.int32: "int32",
    torch.int64: "int64",
}


#: Name prefix of the ControlNet down-block residuals (``down_block_residual_0`` ... ``_11`` for SD 1.5/2.1):
#: inputs of a UNet exported with ControlNet inputs, outputs of a ControlNet.
DOWN_BLOCK_RESIDUAL_PREFIX = "down_block_residual_"
#: Name of the ControlNet mid-block residual.
MID_BLOCK_RESIDUAL = "mid_block_residual"


def residual_names(down_count: int) -> list[str]:
    """The residual names in diffusers' order: the down-block residuals, then the mid-block residual."""
    return [f"{DOWN_BLOCK_RESIDUAL_PREFIX}{index}" for index in range(down_count)] + [MID_BLOCK_RESIDUAL]


class UNetForExport(torch.nn.Module):
    """UNet2DConditionModel with the positional signature (sample, timestep, encoder_hidden_states)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """Returns the predicted noise (``out_sample``)."""
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class UNetWithResidualsForExport(torch.nn.Module):
    """UNet2DConditionModel taking ControlNet residuals as inputs after the base three.

    ``forward(sample, timestep, encoder_hidden_states, down_0, ..., down_{n-1}, mid)`` passes them as
    ``down_block_additional_residuals`` / ``mid_block_additional_residual``: diffusers adds each one
    to its down-block skip connection and the last to the mid block's output.
    """

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        *residuals: torch.Tensor,
    ) -> torch.Tensor:
        """Returns the predicted noise (``out_sample``)."""
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states,
            down_block_additional_residuals=tuple(residuals[:-1]),
            mid_block_additional_residual=residuals[-1],
            return_dict=False,
        )[0]


class UNetWithIPAdapterForExport(torch.nn.Module):
    """UNet2DConditionModel with IP-Adapter layers and the scales as an input after ``encoder_hidden_states``.

    ``forward(sample, timestep, encoder_hidden_states, ip_adapter_scale, *residuals)``.

    The UNet's IP layers are :class:`~.ip_adapter_attention.IPAdapterExportProcessor` s reading
    ``ip_adapter_scale`` [batch, L] from ``scales``; ``encoder_hidden_states`` holds the 77 text tokens
    followed by the image tokens. ControlNet residuals, when given, follow as in
    :class:`UNetWithResidualsForExport`.
    """

    def __init__(self, unet: torch.nn.Module, scales: Any) -> None:
        super().__init__()
        self.unet = unet
        self.scales = scales

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        ip_adapter_scale: torch.Tensor,
        *residuals: torch.Tensor,
    ) -> torch.Tensor:
        """Returns the predicted noise (``out_sample``)."""
        extra: dict[str, Any] = {}
        if residuals:
            extra = {
                "down_block_additional_residuals": tuple(residuals[:-1]),
                "mid_block_additional_residual": residuals[-1],
            }
        with self.scales.use(ip_adapter_scale):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False, **extra)[0]


class ImageEncoderForExport(torch.nn.Module):
    """CLIPVisionModelWithProjection returning ``(image_embeds, hidden_states[-2])``.

    ``image_embeds`` feeds the regular IP-Adapter's projection, the penultimate hidden states
    (what diffusers' ``encode_image`` takes with ``output_hidden_states=True``) a Plus adapter's.
    """

    def __init__(self, image_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(image_embeds, penultimate_hidden_states)``."""
        output = self.image_encoder(pixel_values=pixel_values, output_hidden_states=True)
        return output.image_embeds, output.hidden_states[-2]


class ImageProjectionForExport(torch.nn.Module):
    """diffusers' IP-Adapter image projection (``ImageProjection`` or ``IPAdapterPlusImageProjection``)."""

    def __init__(self, projection: torch.nn.Module) -> None:
        super().__init__()
        self.projection = projection

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Returns ``image_tokens`` [batch, N, D]."""
        return self.projection(image_embeds)


class ControlNetForExport(torch.nn.Module):
    """ControlNetModel returning its residuals as a flat tuple (the down-block ones, then mid).

    ``conditioning_scale`` stays 1: the runtime scales (and sums several ControlNets) itself, so the
    scale can change between frames without touching the model.
    """

    def __init__(self, controlnet: torch.nn.Module) -> None:
        super().__init__()
        self.controlnet = controlnet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Returns ``(down_block_residual_0, ..., mid_block_residual)``."""
        down, mid = self.controlnet(
            sample,
            timestep,
            encoder_hidden_states,
            controlnet_cond,
            conditioning_scale=1.0,
            guess_mode=False,
            return_dict=False,
        )
        return (*down, mid)


class VaeEncoderForExport(torch.nn.Module):
    """Image in [-1, 1] to unscaled latents: the KL posterior's mean, or TAESD's encoder output."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        """Returns ``latent_sample``."""
        encoded = self.vae.encode(sample, return_dict=False)[0]
        # AutoencoderKL returns a DiagonalGaussianDistribution, AutoencoderTiny the latents.
        return encoded.mean if hasattr(encoded, "mean") and not torch.is_tensor(encoded) else encoded


class VaeDecoderForExport(torch.nn.Module):
    """Unscaled latents to an image; both AutoencoderKL and AutoencoderTiny decode to [-1, 1]."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        """Returns the decoded image (``sample``)."""
        return self.vae.decode(latent_sample, return_dict=False)[0]


class TextEncoderForExport(torch.nn.Module):
    """CLIPTextModel taking int32 ids and returning (last_hidden_state, pooler_output)."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(last_hidden_state, pooler_output)``."""
        output = self.text_encoder(input_ids=input_ids.to(torch.int64))
        return output.last_hidden_state, output.pooler_output


@dataclass(frozen=True)
class ExportShapes:
    """Dummy input sizes for tracing and, with ``static``, the fixed sizes of the exported graphs.

    ``height``/``width`` are image pixels (multiples of 64 keep every UNet level whole); latents
    are 8x smaller. ``batch`` is the UNet batch; the VAE and text encoder have their own.
    """

    static: bool = False
    batch: int = 2
    height: int = 128
    width: int = 128
    vae_batch: int = 1
    text_batch: int = 1
    #: Batch of the IP-Adapter image encoder and image projection.
    image_batch: int = 1

    @property
    def latent_height(self) -> int:
        """Latent height (pixels / 8)."""
        return self.height // 8

    @property
    def latent_width(self) -> int:
        """Latent width (pixels / 8)."""
        return self.width // 8

    def validate(self) -> None:
        """Raises ValueError when a size cannot be exported."""
        for name in ("batch", "vae_batch", "text_batch", "image_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value < 64 or value % 64:
                raise ValueError(f"{name} must be a multiple of 64 pixels (>= 64), got {value}")


@dataclass
class ExportSpec:
    """One sub-model to export: wrapper, dummy inputs (in order), output names, dynamic axes."""

    name: str
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    #: Non-standard operator domains the graph uses (``{"com.microsoft": 1}`` for fused attention);
    #: only the TorchScript exporter can write them.
    custom_opsets: dict[str, int] = field(default_factory=dict)


@dataclass
class ExportResult:
    """What one export produced."""

    name: str
    path: Path
    exporter: str
    opset: int
    bytes: int
    external_data: bool
    seconds: float


def _attention_opsets(module: torch.nn.Module | None, attention: str, what: str) -> dict[str, int]:
    """Applies ``--attention`` to ``module``; returns the custom opsets its graph will need.

    ``module=None`` only checks ``attention`` (the caller installs the processors itself).
    """
    from .fused_attention import ATTENTION_KINDS, MS_DOMAIN, MS_OPSET, use_fused_attention

    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
    if attention != "fused":
        return {}
    if module is not None and use_fused_attention(module) == 0:
        raise ValueError(f"--attention fused: the {what} has no diffusers Attention modules to fuse")
    return {MS_DOMAIN: MS_OPSET}


def _denoiser_inputs(
    config: Any, shapes: ExportShapes, dtype: torch.dtype, device: torch.device
) -> dict[str, torch.Tensor]:
    """Dummy ``sample``, ``timestep``, ``encoder_hidden_states`` of a UNet or ControlNet."""
    generator = torch.Generator().manual_seed(0)
    batch, height, width = shapes.batch, shapes.latent_height, shapes.latent_width
    inputs = {
        "sample": torch.randn(batch, config.in_channels, height, width, generator=generator),
        "timestep": torch.linspace(999, 499, batch),
        "encoder_hidden_states": torch.randn(batch, 77, config.cross_attention_dim, generator=generator),
    }
    return {key: value.to(device=device, dtype=dtype) for key, value in inputs.items()}


_DENOISER_AXES: dict[str, dict[int, str]] = {
    "sample": {0: "batch", 2: "height", 3: "width"},
    "timestep": {0: "batch"},
    "encoder_hidden_states": {0: "batch", 1: "sequence"},
}


def residual_axes(shape: tuple[int, ...], latent_height: int, latent_width: int) -> dict[int, str]:
    """Dynamic axes of one residual: batch, and its size named after the latent size it divides."""
    axes = {0: "batch"}
    sizes = ((shape[2], latent_height, "height"), (shape[3], latent_width, "width"))
    for axis, (size, latent, name) in enumerate(sizes, 2):
        factor = latent // size
        if factor * size != latent or factor & (factor - 1):
            raise ValueError(f"residual size {size} does not divide the latent {name} {latent} by a power of 2")
        axes[axis] = name if factor == 1 else f"{name}_div_{factor}"
    return axes


def unet_residual_shapes(
    unet: torch.nn.Module, inputs: dict[str, torch.Tensor], **kwargs: Any
) -> list[tuple[int, ...]]:
    """Shapes of the residuals a ControlNet adds to ``unet`` for these inputs: down-block skips, then mid.

    Read from one forward pass with hooks (the skips are ``conv_in``'s output and every down block's
    ``res_samples``), so any block layout gets the right count and sizes. ``kwargs`` go to the UNet
    call (e.g. ``added_cond_kwargs`` of a UNet holding an IP-Adapter).
    """
    down: list[tuple[int, ...]] = []
    mid: list[tuple[int, ...]] = []
    hooks = [unet.conv_in.register_forward_hook(lambda _m, _i, output: down.append(tuple(output.shape)))]
    for block in unet.down_blocks:
        hooks.append(block.register_forward_hook(lambda _m, _i, output: down.extend(tuple(t.shape) for t in output[1])))
    hooks.append(unet.mid_block.register_forward_hook(lambda _m, _i, output: mid.append(tuple(output.shape))))
    try:
        with torch.no_grad():
            unet(*inputs.values(), return_dict=False, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    if not down or len(mid) != 1:
        raise ValueError("the UNet has no down-block skips or mid block to add ControlNet residuals to")
    return down + mid


def unet_spec(
    unet: torch.nn.Module,
    shapes: ExportShapes,
    dtype: torch.dtype,
    device: torch.device,
    attention: str = "plain",
    controlnet_inputs: bool = False,
    ip_adapter_tokens: int | None = None,
) -> ExportSpec:
    """Export spec of the UNet (``unet/``).

    ``attention="fused"`` gives it MultiHeadAttention nodes; ``controlnet_inputs`` adds the inputs
    ``down_block_residual_0`` ... and ``mid_block_residual`` (model dtype, dynamic like ``sample``).
    ``ip_adapter_tokens`` (the adapter's N) exports a UNet holding diffusers' IP-Adapter processors
    with the input ``ip_adapter_scale`` [batch, L] after ``encoder_hidden_states``, which is traced
    with 77 + N tokens (the token axis stays dynamic); the UNet's image projection is detached.
    """
    inputs = _denoiser_inputs(unet.config, shapes, dtype, device)
    dynamic_axes = {**_DENOISER_AXES, "out_sample": {0: "batch", 2: "height", 3: "width"}}
    module: torch.nn.Module = UNetWithResidualsForExport(unet) if controlnet_inputs else UNetForExport(unet)
    scales_in_use: Any = contextlib.nullcontext()
    if ip_adapter_tokens:
        from .ip_adapter import SCALE_INPUT
        from .ip_adapter_attention import use_ip_adapter_export_processors

        custom_opsets = _attention_opsets(None, attention, "UNet")
        scales, layers = use_ip_adapter_export_processors(unet, attention)
        generator = torch.Generator().manual_seed(6)
        width = unet.config.cross_attention_dim
        image_tokens = torch.randn(shapes.batch, ip_adapter_tokens, width, generator=generator)
        text = inputs["encoder_hidden_states"]
        inputs["encoder_hidden_states"] = torch.cat([text, image_tokens.to(device=device, dtype=dtype)], dim=1)
        inputs[SCALE_INPUT] = torch.rand(shapes.batch, len(layers), generator=generator).to(device=device, dtype=dtype)
        dynamic_axes[SCALE_INPUT] = {0: "batch"}
        module = UNetWithIPAdapterForExport(unet, scales)
        scales_in_use = scales.use(inputs[SCALE_INPUT])
    else:
        custom_opsets = _attention_opsets(unet, attention, "UNet")
    if controlnet_inputs:
        base = {name: inputs[name] for name in ("sample", "timestep", "encoder_hidden_states")}
        with scales_in_use:
            residual_shapes = unet_residual_shapes(unet, base)
        generator = torch.Generator().manual_seed(4)
        for name, shape in zip(residual_names(len(residual_shapes) - 1), residual_shapes):
            # Small values: the traced graph does not depend on them, but NaN-free outputs prove the wiring.
            inputs[name] = (torch.randn(*shape, generator=generator) * 0.1).to(device=device, dtype=dtype)
            dynamic_axes[name] = residual_axes(shape, shapes.latent_height, shapes.latent_width)
    return ExportSpec(
        name="unet",
        module=module,
        inputs=inputs,
        output_names=["out_sample"],
        dynamic_axes=dynamic_axes,
        custom_opsets=custom_opsets,
    )


def controlnet_spec(
    controlnet: torch.nn.Module,
    shapes: ExportShapes,
    dtype: torch.dtype,
    device: torch.device,
    attention: str = "plain",
) -> ExportSpec:
    """Export spec of a ControlNetModel: the UNet's three inputs plus ``controlnet_cond``, residuals out."""
    custom_opsets = _attention_opsets(controlnet, attention, "ControlNet")
    config = controlnet.config
    inputs = _denoiser_inputs(config, shapes, dtype, device)
    generator = torch.Generator().manual_seed(5)
    control = torch.rand(shapes.batch, config.conditioning_channels, shapes.height, shapes.width, generator=generator)
    inputs["controlnet_cond"] = control.to(device=device, dtype=dtype)
    module = ControlNetForExport(controlnet)
    with torch.no_grad():
        outputs = module(*inputs.values())
    output_names = residual_names(len(outputs) - 1)
    dynamic_axes = {**_DENOISER_AXES, "controlnet_cond": {0: "batch", 2: "image_height", 3: "image_width"}}
    for name, output in zip(output_names, outputs):
        dynamic_axes[name] = residual_axes(tuple(output.shape), shapes.latent_height, shapes.latent_width)
    return ExportSpec(
        name="controlnet",
        module=module,
        inputs=inputs,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        custom_opsets=custom_opsets,
    )


def image_encoder_spec(
    image_encoder: torch.nn.Module, shapes: ExportShapes, dtype: torch.dtype, device: torch.device
) -> ExportSpec:
    """Export spec of the IP-Adapter image encoder (``image_encoder/``): pixel_values to embeds and hidden states."""
    config = image_encoder.config
    size = int(config.image_size)
    generator = torch.Generator().manual_seed(7)
    pixels = torch.randn(shapes.image_batch, int(config.num_channels), size, size, generator=generator)
    return ExportSpec(
        name="image_encoder",
        module=ImageEncoderForExport(image_encoder),
        inputs={"pixel_values": pixels.to(device=device, dtype=dtype)},
        output_names=["image_embeds", "penultimate_hidden_states"],
        dynamic_axes={
            "pixel_values": {0: "batch"},
            "image_embeds": {0: "batch"},
            "penultimate_hidden_states": {0: "batch"},
        },
    )


def image_projection_spec(
    projection: torch.nn.Module,
    input_shape: tuple[int, ...],
    shapes: ExportShapes,
    dtype: torch.dtype,
    device: torch.device,
) -> ExportSpec:
    """Export spec of an IP-Adapter image projection (``image_projection/``).

    ``input_shape`` is one image's input without the batch: [P] (regular: ``image_embeds``) or
    [T, H] (Plus: the image encoder's penultimate hidden states). Plain attention (the Resampler's
    16 queries are cheap).
    """
    generator = torch.Generator().manual_seed(8)
    embeds = torch.randn(shapes.image_batch, *input_shape, generator=generator)
    return ExportSpec(
        name="image_projection",
        module=ImageProjectionForExport(projection),
        inputs={"image_embeds": embeds.to(device=device, dtype=dtype)},
        output_names=["image_tokens"],
        dynamic_axes={"image_embeds": {0: "batch"}, "image_tokens": {0: "batch"}},
    )


def vae_encoder_spec(
    vae: torch.nn.Module, shapes: ExportShapes, dtype: torch.dtype, device: torch.device
) -> ExportSpec:
    """Export spec of the VAE encoder (``vae_encoder/``)."""
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(shapes.vae_batch, 3, shapes.height, shapes.width, generator=generator) * 2 - 1
    return ExportSpec(
        name="vae_encoder",
        module=VaeEncoderForExport(vae),
        inputs={"sample": image.to(device=device, dtype=dtype)},
        output_names=["latent_sample"],
        dynamic_axes={
            "sample": {0: "batch", 2: "height", 3: "width"},
            "latent_sample": {0: "batch", 2: "latent_height", 3: "latent_width"},
        },
    )


def vae_decoder_spec(
    vae: torch.nn.Module, shapes: ExportShapes, dtype: torch.dtype, device: torch.device
) -> ExportSpec:
    """Export spec of the VAE decoder (``vae_decoder/``)."""
    generator = torch.Generator().manual_seed(2)
    channels = vae.config.latent_channels
    latent = torch.randn(shapes.vae_batch, channels, shapes.latent_height, shapes.latent_width, generator=generator)
    return ExportSpec(
        name="vae_decoder",
        module=VaeDecoderForExport(vae),
        inputs={"latent_sample": latent.to(device=device, dtype=dtype)},
        output_names=["sample"],
        dynamic_axes={
            "latent_sample": {0: "batch", 2: "height", 3: "width"},
            "sample": {0: "batch", 2: "image_height", 3: "image_width"},
        },
    )


def text_encoder_spec(text_encoder: torch.nn.Module, shapes: ExportShapes, device: torch.device) -> ExportSpec:
    """Export spec of the CLIP text encoder (``text_encoder/``)."""
    vocab_size = text_encoder.config.vocab_size
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, vocab_size, (shapes.text_batch, 77), generator=generator, dtype=torch.int64)
    return ExportSpec(
        name="text_encoder",
        module=TextEncoderForExport(text_encoder),
        inputs={"input_ids": ids.to(device=device, dtype=torch.int32)},
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={
            "input_ids": {0: "batch"},
            "last_hidden_state": {0: "batch"},
            "pooler_output": {0: "batch"},
        },
    )


EXPORTERS = ("auto", "torchscript", "dynamo")


def _clear(folder: Path) -> None:
    for leftover in folder.iterdir():
        if leftover.is_file():
            leftover.unlink()
        else:
            shutil.rmtree(leftover)


def _run_torch_export(spec: ExportSpec, path: Path, static: bool, exporter: str = "auto") -> str:
    """Calls torch.onnx.export; returns the exporter used ('torchscript' or 'dynamo').

    ``auto`` tries the TorchScript exporter (``dynamo=False``) and falls back to ``dynamo=True``
    when it fails or when this torch no longer has it.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    args = tuple(spec.inputs.values())
    common: dict[str, Any] = {
        "input_names": list(spec.inputs),
        "output_names": spec.output_names,
        "opset_version": OPSET,
    }
    dynamic_axes = None if static else spec.dynamic_axes
    parameters = inspect.signature(torch.onnx.export).parameters
    has_dynamo = "dynamo" in parameters
    if exporter == "dynamo" and not has_dynamo:
        raise RuntimeError(f"torch {torch.__version__} has no dynamo ONNX exporter")
    if spec.custom_opsets and exporter == "dynamo":
        raise ValueError(f"{spec.name}: {', '.join(spec.custom_opsets)} operators need the TorchScript exporter")
    if exporter != "dynamo":
        legacy: dict[str, Any] = {**common, "dynamic_axes": dynamic_axes, "do_constant_folding": True}
        if spec.custom_opsets:
            legacy["custom_opsets"] = spec.custom_opsets
        if has_dynamo:
            legacy["dynamo"] = False
        try:
            torch.onnx.export(spec.module, args, str(path), **legacy)
            return "torchscript"
        except Exception as error:
            if exporter == "torchscript" or not has_dynamo or spec.custom_opsets:
                raise
            print(f"  {spec.name}: TorchScript exporter failed ({type(error).__name__}: {error}); trying dynamo=True")
        _clear(path.parent)
    # The dynamo exporter emits opset-18 operators (Split with num_outputs, ...) even when asked
    # for 17, which yields an invalid model: let it use its own minimum, 18.
    dynamo: dict[str, Any] = {**common, "opset_version": DYNAMO_OPSET, "dynamo": True, "external_data": True}
    if dynamic_axes is not None:
        # torch converts dynamic_axes into torch.export dynamic shapes.
        dynamo["dynamic_axes"] = dynamic_axes
    if "fallback" in parameters:
        dynamo["fallback"] = False
    torch.onnx.export(spec.module, args, str(path), **dynamo)
    return "dynamo"


def _weight_bytes(model: Any) -> int:
    """Bytes of all tensors stored in the graph (initializers and Constant nodes)."""
    from onnx import numpy_helper

    total = 0
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for tensor in graph.initializer:
            total += numpy_helper.to_array(tensor).nbytes if not tensor.raw_data else len(tensor.raw_data)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    total += len(attribute.t.raw_data)
                graphs.extend(attribute.graphs)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
    return total


def _pin_shapes(model: Any, spec: ExportSpec, output_shapes: dict[str, tuple[int, ...]], static: bool) -> None:
    """Writes the declared dims into the graph's inputs and outputs.

    Dynamic axes get their names; every other dim gets its traced size. Without this the
    exporter leaves some fixed dims symbolic (the KL encoder's 4 latent channels come out of a
    chunk as "Slicelatent_sample_dim_1"), and the runtime reads shapes from these declarations.
    """
    shapes = {name: tuple(tensor.shape) for name, tensor in spec.inputs.items()}
    shapes.update(output_shapes)
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in shapes:
            continue
        dynamic = {} if static else spec.dynamic_axes.get(value.name, {})
        shape = value.type.tensor_type.shape
        while len(shape.dim) < len(shapes[value.name]):
            shape.dim.add()
        for axis, dim in enumerate(shape.dim):
            if axis in dynamic:
                dim.dim_param = dynamic[axis]
            else:
                dim.dim_value = int(shapes[value.name][axis])


def compact_names(model: Any) -> None:
    """Gives every node and intermediate tensor a short name (``n12``, ``t34``).

    The exporter names them after the module path (``/unet/down_blocks.0/attentions.0/.../Add_output_0``),
    which is ~0.5 MB of a tiny UNet whose weights take less. Graph inputs, outputs and weights keep their
    names, so nothing that loads or feeds the model sees a difference. Graphs with subgraphs (which may
    refer to outer names) only get their nodes renamed.
    """
    graph = model.graph
    nested = any(attribute.g.node or attribute.graphs for node in graph.node for attribute in node.attribute)
    kept = {value.name for value in graph.input} | {value.name for value in graph.output}
    kept |= {tensor.name for tensor in graph.initializer}
    renamed: dict[str, str] = {}
    if not nested:
        for node in graph.node:
            for name in node.output:
                if name and name not in kept and name not in renamed:
                    renamed[name] = f"t{len(renamed)}"
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for value in graph.value_info:
        value.name = renamed.get(value.name, value.name)


def compact_graph(model: Any) -> None:
    """Shrinks a graph's bookkeeping for fixtures: call after :func:`compact_names`; the computation is unchanged.

    Weights get short names (``w0``, ``w1``, ...), nodes lose their names, ``Identity`` nodes that only
    forward a weight are dropped (their consumers read the weight), and the exporter's ``value_info``
    shape annotations go. Graph inputs and outputs keep their names. About 70 KB of a 390 KB micro
    UNet. Graphs with subgraphs are left as they are.
    """
    graph = model.graph
    if any(attribute.g.node or attribute.graphs for node in graph.node for attribute in node.attribute):
        return
    kept = {value.name for value in graph.input} | {value.name for value in graph.output}
    weights = {tensor.name for tensor in graph.initializer}
    forwarded: dict[str, str] = {}
    nodes = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in weights and node.output[0] not in kept:
            forwarded[node.output[0]] = node.input[0]
        else:
            nodes.append(node)
    renamed = {name: f"w{index}" for index, name in enumerate(t.name for t in graph.initializer) if name not in kept}
    for tensor in graph.initializer:
        tensor.name = renamed.get(tensor.name, tensor.name)
    del graph.node[:]
    graph.node.extend(nodes)
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        inputs = [forwarded.get(name, name) for name in node.input]
        node.input[:] = [renamed.get(name, name) for name in inputs]
    del graph.value_info[:]


def external_data_threshold() -> int:
    """Weight bytes above which external data is used (env STREAMDIFFUSION_EXTERNAL_DATA_THRESHOLD, for tests)."""
    return int(os.environ.get("STREAMDIFFUSION_EXTERNAL_DATA_THRESHOLD", EXTERNAL_DATA_THRESHOLD))


def export_submodel(
    spec: ExportSpec,
    out_dir: Path,
    static: bool,
    exporter: str = "auto",
    short_names: bool = False,
    compact: bool = False,
) -> ExportResult:
    """Exports one sub-model to ``out_dir/model.onnx`` (+ ``model.onnx_data`` when over 2 GB).

    ``short_names`` renames nodes and intermediate tensors (:func:`compact_names`); ``compact`` also
    does that and then :func:`compact_graph`.
    """
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "model.onnx", out_dir / EXTERNAL_DATA_FILE):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    spec.module.eval()
    with tempfile.TemporaryDirectory(prefix=f".export-{spec.name}-", dir=out_dir.parent) as scratch:
        scratch_path = Path(scratch) / "model.onnx"
        with torch.no_grad():
            outputs = spec.module(*spec.inputs.values())
            output_shapes = [tuple(output.shape) for output in ((outputs,) if torch.is_tensor(outputs) else outputs)]
            used = _run_torch_export(spec, scratch_path, static, exporter)
        model = onnx.load(str(scratch_path), load_external_data=True)
        _pin_shapes(model, spec, dict(zip(spec.output_names, output_shapes)), static)
        if short_names or compact:
            compact_names(model)
        if compact:
            compact_graph(model)
        external = _weight_bytes(model) > external_data_threshold()
        target = out_dir / "model.onnx"
        if external:
            onnx.save_model(
                model,
                str(target),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=EXTERNAL_DATA_FILE,
                size_threshold=1024,
            )
            # onnx creates the data file with mode 0600; model folders are shared and served.
            (out_dir / EXTERNAL_DATA_FILE).chmod(0o644)
        else:
            onnx.save_model(model, str(target))
        del model
    onnx.checker.check_model(str(target))
    opset = max(
        (
            entry.version
            for entry in onnx.load(str(target), load_external_data=False).opset_import
            if entry.domain in ("", "ai.onnx")
        ),
        default=OPSET,
    )
    size = sum(path.stat().st_size for path in (target, out_dir / EXTERNAL_DATA_FILE) if path.exists())
    return ExportResult(
        name=spec.name,
        path=target,
        exporter=used,
        opset=opset,
        bytes=size,
        external_data=external,
        seconds=time.perf_counter() - started,
    )
