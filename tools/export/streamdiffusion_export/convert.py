"""``convert``: a diffusers Stable Diffusion checkpoint folder to our ONNX model folder.

Output layout (Optimum / diffusers ONNX style)::

    model_index.json               diffusers-style index + our "streamdiffusion_export" key
    unet/model.onnx, config.json   (+ ControlNet residual inputs with ``controlnet_inputs``;
                                   + ip_adapter_scale and unet/ip_adapter.json with an IP-Adapter)
    vae_encoder/model.onnx, config.json   (the VAE's diffusers config: scaling_factor etc.)
    vae_decoder/model.onnx, config.json
    text_encoder/model.onnx, config.json
    tokenizer/                     vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
    scheduler/scheduler_config.json   LCMScheduler config
    image_encoder/, feature_extractor/, image_projection/   with an IP-Adapter (ip_adapter_export.py)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import TOOL_NAME, __version__
from .checkpoint import PipelineModules, copy_tokenizer, load_pipeline_modules, read_json, write_json
from .configs import LCM_SCHEDULER_SETTINGS, NOISE_SCHEDULE_KEYS, detect_arch, ip_adapter_sizes
from .environment import prepare_diffusers_import
from .export_onnx import (
    DTYPES,
    OPSET,
    ExportResult,
    ExportShapes,
    ExportSpec,
    export_submodel,
    text_encoder_spec,
    unet_spec,
    vae_decoder_spec,
    vae_encoder_spec,
)
from .ip_adapter_export import image_side_factories, write_image_side_files, write_unet_info

SUBMODELS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")


@dataclass
class ConvertOptions:
    """Options of one conversion."""

    checkpoint: Path
    out_dir: Path
    dtype: str = "fp32"
    shapes: ExportShapes = field(default_factory=ExportShapes)
    taesd: Path | None = None
    arch: str | None = None
    device: str = "auto"
    exporter: str = "auto"
    #: ``plain`` (standard ONNX ops, runs everywhere) or ``fused`` (MultiHeadAttention; fast on
    #: WebGPU/CUDA, fp32-only on the CPU).
    attention: str = "plain"
    #: Export the UNet with the ControlNet residual inputs (``down_block_residual_*``, ``mid_block_residual``).
    controlnet_inputs: bool = False
    #: Short node and intermediate tensor names (``export_onnx.compact_names``): smaller tiny models.
    short_names: bool = False
    #: Also short weight names, no node names, Identity-forwarded weights and value_info dropped
    #: (``export_onnx.compact_graph``): the smallest tiny models, for fixtures.
    compact_graph: bool = False
    #: An IP-Adapter to build in (``ip_adapter.IPAdapterRequest``): the UNet gets ``ip_adapter_scale``
    #: and the folder ``image_encoder/``, ``feature_extractor/``, ``image_projection/``.
    ip_adapter: Any = None


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lcm_scheduler_config(source: dict[str, Any]) -> dict[str, Any]:
    """LCMScheduler config for the runtime: the source's noise schedule, LCM's step settings.

    A source that already is an LCMScheduler config is kept as it is.
    """
    prepare_diffusers_import()
    from diffusers import LCMScheduler

    if source.get("_class_name") == "LCMScheduler":
        return dict(source)
    kept = {key: source[key] for key in NOISE_SCHEDULE_KEYS if key in source}
    scheduler = LCMScheduler.from_config({**kept, **LCM_SCHEDULER_SETTINGS})
    config = dict(scheduler.config)
    config["_class_name"] = "LCMScheduler"
    config["_diffusers_version"] = _diffusers_version()
    return {key: value for key, value in config.items() if not key.startswith("_use_default_values")}


def _diffusers_version() -> str:
    prepare_diffusers_import()
    import diffusers

    return diffusers.__version__


def _save_module_config(module: torch.nn.Module, folder: Path) -> None:
    """Writes the module's own config.json (diffusers save_config / transformers save_pretrained)."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "save_config"):
        module.save_config(str(folder))
    else:
        module.config.save_pretrained(str(folder))
    # Loading from a local folder records its path; keep machine paths out of model folders.
    path = folder / "config.json"
    config = read_json(path)
    if config.pop("_name_or_path", None) is not None:
        write_json(path, config)


def export_info(
    arch: str,
    dtype: str,
    shapes: ExportShapes,
    results: list[ExportResult],
    attention: str,
    short_names: bool,
    compact_graph: bool = False,
) -> dict[str, Any]:
    """What the tool records about an export (``streamdiffusion_export`` in model_index.json, controlnet.json).

    ``compact_graph`` is recorded only when set (exports without it keep the keys they always had).
    """
    exporters = sorted({result.exporter for result in results})
    info = {
        "arch": arch,
        "dtype": dtype,
        "attention": attention,
        "short_names": short_names,
        "tool": TOOL_NAME,
        "tool_version": __version__,
        "opset": max((result.opset for result in results), default=OPSET),
        "exporter": exporters[0] if len(exporters) == 1 else exporters,
        "torch": torch.__version__.split("+")[0],
        "static": (
            {
                "batch": shapes.batch,
                "height": shapes.height,
                "width": shapes.width,
                "vae_batch": shapes.vae_batch,
                "text_batch": shapes.text_batch,
            }
            if shapes.static
            else None
        ),
    }
    if shapes.static and shapes.image_batch != 1:
        info["static"]["image_batch"] = shapes.image_batch
    if compact_graph:
        info["compact_graph"] = True
        info["short_names"] = True
    return info


def _model_index(
    modules: PipelineModules,
    options: ConvertOptions,
    arch: str,
    results: list[ExportResult],
    ip_adapter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    vae_class = "AutoencoderTiny" if modules.vae_kind == "taesd" else "AutoencoderKL"
    info = export_info(
        arch, options.dtype, options.shapes, results, options.attention, options.short_names, options.compact_graph
    )
    ip_components: dict[str, Any] = {}
    if ip_adapter is not None:
        projection_class = "ImageProjection" if ip_adapter["kind"] == "regular" else "IPAdapterPlusImageProjection"
        ip_components = {
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "image_projection": ["diffusers", projection_class],
        }
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": _diffusers_version(),
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "LCMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae_decoder": ["diffusers", vae_class],
        "vae_encoder": ["diffusers", vae_class],
        "streamdiffusion_export": {
            **info,
            "vae": modules.vae_kind,
            "controlnet_inputs": options.controlnet_inputs,
        },
    }
    if ip_adapter is not None:
        # Only with an adapter: folders without one keep exactly the index they always had.
        index["streamdiffusion_export"]["ip_adapter"] = ip_adapter
        index.update(ip_components)
    return index


def export_reported(
    make_spec: Callable[[], ExportSpec],
    folder: Path,
    exporter: str,
    static: bool,
    short_names: bool,
    device: torch.device,
    compact: bool = False,
) -> ExportResult:
    """Builds one spec and exports it into ``folder``, printing size and time.

    A CPU torch without half-precision kernels fails fp16 tracing with an error naming "Half";
    that becomes a RuntimeError that says to export on CUDA.
    """
    started = time.perf_counter()
    try:
        spec = make_spec()
        result = export_submodel(
            spec, folder, static=static, exporter=exporter, short_names=short_names, compact=compact
        )
    except Exception as error:
        if device.type == "cpu" and "Half" in str(error):
            raise RuntimeError(
                f"{folder.name}: this torch build cannot run fp16 on the CPU ({error}); "
                "export fp16 on a CUDA device (--device cuda)"
            ) from error
        raise
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(
        f"  {folder.name}: {result.bytes / 1e6:.2f} MB, {result.exporter} exporter, opset {result.opset}, "
        f"{'external data, ' if result.external_data else ''}{time.perf_counter() - started:.1f} s"
    )
    return result


def _prepare_ip_adapter(
    options: ConvertOptions, modules: PipelineModules, arch: str, dtype: torch.dtype
) -> tuple[Any, Any]:
    """Reads or makes the adapter, installs it into the float32 UNet and computes the check references."""
    from .ip_adapter import resolve_ip_adapter
    from .ip_adapter_export import image_side_checks, install, unet_checks

    adapter = resolve_ip_adapter(options.ip_adapter, modules.unet, ip_adapter_sizes(arch))
    parts = install(adapter, modules.unet)
    checks = image_side_checks(parts, dtype, with_encoder=True, shapes=options.shapes)
    checks.checks += unet_checks(parts, modules.unet, dtype, options.controlnet_inputs, options.shapes)
    return parts, checks


def convert(options: ConvertOptions, modules: PipelineModules | None = None) -> list[ExportResult]:
    """Exports every sub-model and writes the model folder; returns one result per ONNX file."""
    if options.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {options.dtype!r}")
    options.shapes.validate()
    dtype = DTYPES[options.dtype]
    device = resolve_device(options.device)
    if modules is None:
        modules = load_pipeline_modules(options.checkpoint, taesd=options.taesd)
    arch = options.arch or detect_arch(dict(modules.unet.config))
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"converting {options.checkpoint} -> {out} "
        f"(arch {arch}, {options.dtype}, vae {modules.vae_kind}, {options.attention} attention, {device}"
        f"{', ControlNet inputs' if options.controlnet_inputs else ''}"
        f"{', IP-Adapter' if options.ip_adapter is not None else ''})"
    )

    shapes = options.shapes
    ip_parts = ip_checks = None
    if options.ip_adapter is not None:
        ip_parts, ip_checks = _prepare_ip_adapter(options, modules, arch, dtype)
    for module in (modules.unet, modules.vae, modules.text_encoder):
        module.to(device=device, dtype=dtype)
    spec_factories: list[tuple[str, Callable[[], ExportSpec]]] = [
        ("text_encoder", lambda: text_encoder_spec(modules.text_encoder, shapes, device)),
        (
            "unet",
            lambda: unet_spec(
                modules.unet,
                shapes,
                dtype,
                device,
                attention=options.attention,
                controlnet_inputs=options.controlnet_inputs,
                ip_adapter_tokens=ip_parts.adapter.image_tokens if ip_parts else None,
            ),
        ),
        ("vae_encoder", lambda: vae_encoder_spec(modules.vae, shapes, dtype, device)),
        ("vae_decoder", lambda: vae_decoder_spec(modules.vae, shapes, dtype, device)),
    ]
    if ip_parts is not None:
        for module in (ip_parts.adapter.image_encoder, ip_parts.projection):
            module.to(device=device, dtype=dtype)
        spec_factories += image_side_factories(ip_parts, shapes, dtype, device, with_encoder=True)
    results = [
        export_reported(
            factory, out / name, options.exporter, shapes.static, options.short_names, device, options.compact_graph
        )
        for name, factory in spec_factories
    ]

    _save_module_config(modules.unet, out / "unet")
    _save_module_config(modules.vae, out / "vae_encoder")
    _save_module_config(modules.vae, out / "vae_decoder")
    _save_module_config(modules.text_encoder, out / "text_encoder")
    copy_tokenizer(modules.tokenizer_dir, out / "tokenizer")
    write_json(out / "scheduler" / "scheduler_config.json", lcm_scheduler_config(modules.scheduler_config))
    ip_entry = None
    if ip_parts is not None and ip_checks is not None:
        write_unet_info(ip_parts, out / "unet")
        write_image_side_files(ip_parts, out, with_encoder=True)
        ip_entry = ip_parts.model_index_entry()
    write_json(out / "model_index.json", _model_index(modules, options, arch, results, ip_entry))
    if ip_checks is not None:
        ip_checks.run(out, "float16" if dtype == torch.float16 else "float32", options.attention)
    return results
