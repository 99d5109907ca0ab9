"""ONNX export of the four Stable Diffusion sub-models, with Optimum's input and output names.

Each sub-model is wrapped in a small ``torch.nn.Module`` whose ``forward`` takes exactly the ONNX
inputs and returns exactly the ONNX outputs:

============  ======================================  ===========================================
folder        inputs                                  outputs
============  ======================================  ===========================================
unet          sample [batch,4,height,width],          out_sample [batch,4,height,width]
              timestep [batch] (model float dtype),
              encoder_hidden_states [batch,seq,D]
vae_encoder   sample [batch,3,height,width] in [-1,1] latent_sample [batch,4,h/8,w/8] (unscaled;
                                                      KL: the distribution mean)
vae_decoder   latent_sample [batch,4,height,width]    sample [batch,3,8h,8w], nominally [-1,1]
              (unscaled)
text_encoder  input_ids [batch,77] int32              last_hidden_state [batch,77,D],
                                                      pooler_output [batch,D]
============  ======================================  ===========================================

The TorchScript exporter (``dynamo=False``, opset 17) is used where torch still has it; the
dynamo exporter is the fallback. Models over 2 GB keep their weights in one ``model.onnx_data``
file next to ``model.onnx``.
"""

from __future__ import annotations

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
        for name in ("batch", "vae_batch", "text_batch"):
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


def unet_spec(
    unet: torch.nn.Module, shapes: ExportShapes, dtype: torch.dtype, device: torch.device, attention: str = "plain"
) -> ExportSpec:
    """Export spec of the UNet (``unet/``); ``attention="fused"`` gives it MultiHeadAttention nodes."""
    from .fused_attention import ATTENTION_KINDS, MS_DOMAIN, MS_OPSET, use_fused_attention

    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
    custom_opsets = {}
    if attention == "fused":
        if use_fused_attention(unet) == 0:
            raise ValueError("--attention fused: the UNet has no diffusers Attention modules to fuse")
        custom_opsets = {MS_DOMAIN: MS_OPSET}
    config = unet.config
    width = config.cross_attention_dim
    generator = torch.Generator().manual_seed(0)
    batch, height, latent_width = shapes.batch, shapes.latent_height, shapes.latent_width
    inputs = {
        "sample": torch.randn(batch, config.in_channels, height, latent_width, generator=generator),
        "timestep": torch.linspace(999, 499, batch),
        "encoder_hidden_states": torch.randn(batch, 77, width, generator=generator),
    }
    return ExportSpec(
        name="unet",
        module=UNetForExport(unet),
        inputs={key: value.to(device=device, dtype=dtype) for key, value in inputs.items()},
        output_names=["out_sample"],
        dynamic_axes={
            "sample": {0: "batch", 2: "height", 3: "width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "out_sample": {0: "batch", 2: "height", 3: "width"},
        },
        custom_opsets=custom_opsets,
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


def external_data_threshold() -> int:
    """Weight bytes above which external data is used (env STREAMDIFFUSION_EXTERNAL_DATA_THRESHOLD, for tests)."""
    return int(os.environ.get("STREAMDIFFUSION_EXTERNAL_DATA_THRESHOLD", EXTERNAL_DATA_THRESHOLD))


def export_submodel(spec: ExportSpec, out_dir: Path, static: bool, exporter: str = "auto") -> ExportResult:
    """Exports one sub-model to ``out_dir/model.onnx`` (+ ``model.onnx_data`` when over 2 GB)."""
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
