"""IP-Adapter parts of a model folder: files, image-side exports, and onnxruntime checks against diffusers.

Model folder additions (``convert --ip-adapter`` / ``--ip-adapter-random``)::

    unet/model.onnx                 + input ip_adapter_scale [batch, L] after encoder_hidden_states,
                                      whose token axis holds 77 text + N image tokens
    unet/ip_adapter.json            {scale_input, layers, image_tokens, kind, attention_id, source}
    image_encoder/model.onnx        pixel_values [batch,3,S,S] -> image_embeds [batch,P],
                                      penultimate_hidden_states [batch,T,H]
    image_encoder/config.json       the transformers CLIPVisionConfig
    feature_extractor/preprocessor_config.json   CLIPImageProcessor for S (CLIP mean/std, bicubic)
    image_projection/model.onnx     image_embeds ([batch,P] regular, [batch,T,H] Plus) -> image_tokens [batch,N,D]
    image_projection/config.json    {kind, image_tokens, input, cross_attention_dim, attention_id, source}

``ip-adapter-image`` writes the image side alone (``image_projection/``, optionally ``image_encoder/``
and ``feature_extractor/``) into a folder.

Every exported part is run in onnxruntime (CPU) and compared with diffusers/transformers in
PyTorch (float32, CPU) on inputs rounded to the model dtype: the image encoder, the projection, and
the UNet with its own image tokens and different scales per batch entry (the reference runs diffusers
once per entry with ``processor.scale = [s_l]``) and with the other token count (16 for a regular
adapter, 4 for Plus; diffusers fed those tokens through an identity projection). Fails above
``goldens.RELATIVE_TOLERANCE`` x max(1, max|reference|). A fused fp16 UNet is not checked:
onnxruntime's CPU provider has no fp16 MultiHeadAttention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import write_json
from .export_onnx import ExportShapes, ExportSpec, image_encoder_spec, image_projection_spec, residual_names
from .ip_adapter import (
    PLUS_TOKENS,
    REGULAR_TOKENS,
    SCALE_INPUT,
    TEXT_TOKENS,
    IPAdapter,
    install_ip_adapter,
    ip_layer_names,
    make_feature_extractor,
    set_ip_scales,
)

UNET_INFO_FILE = "ip_adapter.json"
IMAGE_ENCODER_FOLDER = "image_encoder"
FEATURE_EXTRACTOR_FOLDER = "feature_extractor"
PROJECTION_FOLDER = "image_projection"
#: Latent size of the UNet checks: not the tracing size (16x16), so the dynamic axes are exercised.
CHECK_LATENT = (8, 8)


@dataclass
class IPAdapterParts:
    """An adapter installed into the float32 UNet: its diffusers projection, layer names and id."""

    adapter: IPAdapter
    #: ``unet.encoder_hid_proj.image_projection_layers[0]`` after ``_load_ip_adapter_weights``.
    projection: torch.nn.Module
    #: The cross-attention layers in scale order.
    layers: list[str]

    @property
    def projection_input_shape(self) -> tuple[int, ...]:
        """One image's projection input: [P] or [T, H] (T = (S / patch)² + 1)."""
        config = self.adapter.image_encoder.config
        if self.adapter.kind == "regular":
            return (int(config.projection_dim),)
        tokens = (int(config.image_size) // int(config.patch_size)) ** 2 + 1
        return (tokens, int(config.hidden_size))

    def model_index_entry(self) -> dict[str, Any]:
        """What model_index.json's ``streamdiffusion_export.ip_adapter`` records."""
        adapter = self.adapter
        return {"kind": adapter.kind, "image_tokens": adapter.image_tokens, "source": adapter.source}


def install(adapter: IPAdapter, unet: torch.nn.Module) -> IPAdapterParts:
    """Installs the adapter into the (float32, CPU) UNet with diffusers and prints what it holds."""
    projection = install_ip_adapter(unet, adapter)
    layers = ip_layer_names(unet)
    print(
        f"  IP-Adapter {adapter.kind}: {adapter.image_tokens} image tokens, {len(layers)} layers "
        f"(down, up, mid), attention id {adapter.attention_id[:16]}..., {type(projection).__name__}"
    )
    return IPAdapterParts(adapter=adapter, projection=projection, layers=layers)


def image_side_factories(
    parts: IPAdapterParts, shapes: ExportShapes, dtype: torch.dtype, device: torch.device, with_encoder: bool
) -> list[tuple[str, Callable[[], ExportSpec]]]:
    """(folder, spec factory) of the image projection and, ``with_encoder``, the image encoder."""
    factories: list[tuple[str, Callable[[], ExportSpec]]] = []
    if with_encoder:
        encoder = parts.adapter.image_encoder
        factories.append((IMAGE_ENCODER_FOLDER, lambda: image_encoder_spec(encoder, shapes, dtype, device)))
    factories.append(
        (
            PROJECTION_FOLDER,
            lambda: image_projection_spec(parts.projection, parts.projection_input_shape, shapes, dtype, device),
        )
    )
    return factories


def _save_transformers_config(config: Any, folder: Path) -> None:
    from .checkpoint import read_json

    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    path = folder / "config.json"
    saved = read_json(path)
    if saved.pop("_name_or_path", None) is not None:
        write_json(path, saved)


def write_image_side_files(parts: IPAdapterParts, out: Path, with_encoder: bool) -> None:
    """Writes ``image_projection/config.json`` and, ``with_encoder``, the encoder config and preprocessor."""
    adapter = parts.adapter
    write_json(
        out / PROJECTION_FOLDER / "config.json",
        {
            "kind": adapter.kind,
            "image_tokens": adapter.image_tokens,
            "input": adapter.projection_input,
            "cross_attention_dim": adapter.cross_attention_dim,
            "attention_id": adapter.attention_id,
            "source": adapter.source,
        },
    )
    if with_encoder:
        config = adapter.image_encoder.config
        _save_transformers_config(config, out / IMAGE_ENCODER_FOLDER)
        folder = out / FEATURE_EXTRACTOR_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        make_feature_extractor(int(config.image_size)).save_pretrained(str(folder))


def write_unet_info(parts: IPAdapterParts, unet_folder: Path) -> None:
    """Writes ``unet/ip_adapter.json``."""
    adapter = parts.adapter
    write_json(
        unet_folder / UNET_INFO_FILE,
        {
            "scale_input": SCALE_INPUT,
            "layers": parts.layers,
            "image_tokens": adapter.image_tokens,
            "kind": adapter.kind,
            "attention_id": adapter.attention_id,
            "source": adapter.source,
        },
    )


# --- diffusers references -------------------------------------------------------------------------------


@contextlib.contextmanager
def tokens_as_image_embeds(unet: torch.nn.Module) -> Iterator[None]:
    """Within: ``added_cond_kwargs={"image_embeds": [tokens[:, None]]}`` feeds ready tokens to diffusers' IP layers.

    Swaps the UNet's image projection for diffusers' ``MultiIPAdapterImageProjection`` of an identity,
    so any token count reaches the real ``IPAdapterAttnProcessor2_0`` s.
    """
    from diffusers.models.embeddings import MultiIPAdapterImageProjection

    saved = unet.encoder_hid_proj
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([torch.nn.Identity()])
    try:
        yield
    finally:
        unet.encoder_hid_proj = saved


def diffusers_ip_unet(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    image_embeds: torch.Tensor,
    scales: list[float],
    residuals: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Runs diffusers' UNet with the IP-Adapter installed: ``added_cond_kwargs={"image_embeds": [image_embeds]}``.

    ``image_embeds`` is [batch, 1, ...] (one image per entry) and goes through the UNet's projection;
    ``scales`` are set on the IP processors (one per layer, same for every entry).
    """
    set_ip_scales(unet, scales)
    extra: dict[str, Any] = {}
    if residuals:
        extra = {
            "down_block_additional_residuals": tuple(residuals[:-1]),
            "mid_block_additional_residual": residuals[-1],
        }
    with torch.no_grad():
        return unet(
            sample, timestep, text, added_cond_kwargs={"image_embeds": [image_embeds]}, return_dict=False, **extra
        )[0]


@dataclass
class _Check:
    """One onnxruntime run of an exported part and its PyTorch reference."""

    folder: str
    what: str
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


@dataclass
class IPAdapterChecks:
    """References computed before export (the UNet still holds diffusers' processors), run after."""

    checks: list[_Check] = field(default_factory=list)

    def run(self, out: Path, dtype_name: str, attention: str) -> dict[str, float]:
        """Runs every check in onnxruntime (CPU); returns the max abs diff per check, raises above tolerance."""
        import onnxruntime

        from .goldens import RELATIVE_TOLERANCE

        sessions: dict[str, Any] = {}
        report: dict[str, float] = {}
        failures: list[str] = []
        for check in self.checks:
            if check.folder == "unet" and attention == "fused" and dtype_name == "float16":
                print(f"  {check.what}: not checked (onnxruntime's CPU provider has no fp16 MultiHeadAttention)")
                continue
            if check.folder not in sessions:
                sessions[check.folder] = onnxruntime.InferenceSession(
                    str(out / check.folder / "model.onnx"), providers=["CPUExecutionProvider"]
                )
            names = list(check.expected)
            actual = sessions[check.folder].run(names, check.feeds)
            worst = 0.0
            for name, got in zip(names, actual):
                expected = check.expected[name]
                if got.shape != expected.shape:
                    raise RuntimeError(f"{check.what} {name}: onnxruntime shape {got.shape} != {expected.shape}")
                diff = float(np.max(np.abs(got.astype(np.float32) - expected)))
                allowed = RELATIVE_TOLERANCE[dtype_name] * max(1.0, float(np.max(np.abs(expected))))
                if not np.isfinite(diff) or diff > allowed:
                    failures.append(f"{check.what} {name}: max abs diff {diff:.3g} > {allowed:.3g}")
                worst = max(worst, diff)
            report[check.what] = worst
            print(f"  {check.what}: onnxruntime vs pytorch max abs diff {worst:.3g}")
        if failures:
            raise RuntimeError("onnxruntime does not reproduce PyTorch:\n  " + "\n  ".join(failures))
        return report


def _rounded(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The values the model dtype can hold, back in float32 (what the reference sees)."""
    return tensor.to(dtype).float()


def _feed(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return tensor.to(dtype).numpy()


def _projection_input(parts: IPAdapterParts, batch: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, Any]:
    """Seeded pixels through the image encoder: (the projection's input rounded to the dtype, the encoder output)."""
    adapter = parts.adapter
    config = adapter.image_encoder.config
    size = int(config.image_size)
    generator = torch.Generator().manual_seed(seed)
    pixels = _rounded(torch.randn(batch, int(config.num_channels), size, size, generator=generator), dtype)
    with torch.no_grad():
        output = adapter.image_encoder(pixel_values=pixels, output_hidden_states=True)
    embeds = output.image_embeds if adapter.kind == "regular" else output.hidden_states[-2]
    return _rounded(embeds, dtype), (pixels, output.image_embeds, output.hidden_states[-2])


def image_side_checks(
    parts: IPAdapterParts, dtype: torch.dtype, with_encoder: bool, shapes: ExportShapes
) -> IPAdapterChecks:
    """Checks of the image encoder and the projection on seeded pixels (batch 2, or the static batch)."""
    batch = shapes.image_batch if shapes.static else 2
    projection_input, (pixels, embeds, penultimate) = _projection_input(parts, batch, 500, dtype)
    with torch.no_grad():
        tokens = parts.projection(projection_input)
    checks = IPAdapterChecks()
    if with_encoder:
        checks.checks.append(
            _Check(
                IMAGE_ENCODER_FOLDER,
                "image_encoder",
                {"pixel_values": _feed(pixels, dtype)},
                {"image_embeds": embeds.numpy(), "penultimate_hidden_states": penultimate.numpy()},
            )
        )
    checks.checks.append(
        _Check(
            PROJECTION_FOLDER,
            "image_projection",
            {"image_embeds": _feed(projection_input, dtype)},
            {"image_tokens": tokens.numpy()},
        )
    )
    return checks


def unet_checks(
    parts: IPAdapterParts,
    unet: torch.nn.Module,
    dtype: torch.dtype,
    controlnet_inputs: bool,
    shapes: ExportShapes,
) -> list[_Check]:
    """UNet checks: own tokens with a different scale vector per entry, then the other token count.

    ``unet`` is the float32 CPU UNet with diffusers' IP processors (before the export swaps them).
    Dynamic exports are checked at batch 2 and latent 8x8 (not the tracing size); static ones at their
    size, without the other token count (the token axis is fixed too).
    """
    from .export_onnx import unet_residual_shapes

    config = unet.config
    layer_count = len(parts.layers)
    batch = shapes.batch if shapes.static else 2
    height, width = (shapes.latent_height, shapes.latent_width) if shapes.static else CHECK_LATENT
    projection_input, _ = _projection_input(parts, batch, 502, dtype)
    generator = torch.Generator().manual_seed(501)
    sample = _rounded(torch.randn(batch, config.in_channels, height, width, generator=generator), dtype)
    timestep = _rounded(torch.linspace(999.0, 499.0, batch), dtype)
    text = _rounded(torch.randn(batch, TEXT_TOKENS, config.cross_attention_dim, generator=generator), dtype)
    # A different scale vector per batch entry (not expressible in one diffusers call).
    scales = _rounded(
        torch.stack([torch.linspace(1.2, 0.0, layer_count).roll(5 * entry) for entry in range(batch)]), dtype
    )
    residuals: list[torch.Tensor] = []
    if controlnet_inputs:
        with tokens_as_image_embeds(unet):
            dummy = torch.zeros(batch, 1, REGULAR_TOKENS, config.cross_attention_dim)
            residual_shapes = unet_residual_shapes(
                unet,
                {"sample": sample, "timestep": timestep, "encoder_hidden_states": text},
                added_cond_kwargs={"image_embeds": [dummy]},
            )
        residuals = [_rounded(torch.randn(*shape, generator=generator) * 0.3, dtype) for shape in residual_shapes]

    # Own tokens (the projection's, rounded to the model dtype as the ONNX UNet gets them): diffusers
    # once per batch entry with that entry's scales, then stacked.
    with torch.no_grad():
        tokens = _rounded(parts.projection(projection_input), dtype)
    outputs = []
    with tokens_as_image_embeds(unet):
        for entry in range(batch):
            outputs.append(
                diffusers_ip_unet(
                    unet,
                    sample[entry : entry + 1],
                    timestep[entry : entry + 1],
                    text[entry : entry + 1],
                    tokens[entry : entry + 1, None],
                    scales[entry].tolist(),
                    [residual[entry : entry + 1] for residual in residuals],
                )
            )
    residual_feeds = {
        name: _feed(residual, dtype) for name, residual in zip(residual_names(len(residuals) - 1), residuals)
    }
    own = _Check(
        "unet",
        f"unet ({parts.adapter.image_tokens} image tokens, per-entry scales)",
        {
            "sample": _feed(sample, dtype),
            "timestep": _feed(timestep, dtype),
            "encoder_hidden_states": _feed(torch.cat([text, tokens], dim=1), dtype),
            SCALE_INPUT: _feed(scales, dtype),
            **residual_feeds,
        },
        {"out_sample": torch.cat(outputs).numpy()},
    )
    if shapes.static:
        return [own]

    # The other token count (a Plus adapter's 16 on a regular UNet and vice versa), equal rows.
    other = PLUS_TOKENS if parts.adapter.image_tokens == REGULAR_TOKENS else REGULAR_TOKENS
    other_tokens = _rounded(torch.randn(batch, other, config.cross_attention_dim, generator=generator), dtype)
    uniform = [0.8] * layer_count
    with tokens_as_image_embeds(unet):
        expected = diffusers_ip_unet(unet, sample, timestep, text, other_tokens[:, None], uniform, residuals or None)
    other_check = _Check(
        "unet",
        f"unet ({other} image tokens)",
        {
            **own.feeds,
            "encoder_hidden_states": _feed(torch.cat([text, other_tokens], dim=1), dtype),
            SCALE_INPUT: np.full((batch, layer_count), 0.8, dtype=own.feeds[SCALE_INPUT].dtype),
        },
        {"out_sample": expected.numpy()},
    )
    return [own, other_check]


# --- ip-adapter-image -------------------------------------------------------------------------------------


def meta_unet(arch: str | None, checkpoint: Path | None) -> torch.nn.Module:
    """A UNet2DConditionModel of a known arch or of a checkpoint's ``unet/config.json``, on the meta device.

    Only its config and attention layout are used (layer widths of random adapters, fit checks), so
    no weights are allocated even for full-size archs.
    """
    from diffusers import UNet2DConditionModel

    from .configs import get_arch

    if (arch is None) == (checkpoint is None):
        raise ValueError("give the UNet as --arch NAME or --checkpoint <diffusers folder>")
    if checkpoint is not None:
        config = UNet2DConditionModel.load_config(str(checkpoint / "unet"))
    else:
        config = dict(get_arch(arch).unet)
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def export_image_side(
    request: Any,
    unet: torch.nn.Module,
    arch: str,
    out: Path,
    dtype_name: str,
    shapes: ExportShapes,
    device: torch.device,
    exporter: str,
    short_names: bool,
    with_encoder: bool,
    compact: bool = False,
) -> list[Any]:
    """``ip-adapter-image``: the adapter's ``image_projection/`` (and image encoder) in a folder of its own.

    ``unet`` (e.g. :func:`meta_unet`) gives the layout a random adapter is made for. The projection is
    diffusers' converter's module (``_convert_ip_adapter_image_proj_to_diffusers``, which
    ``_load_ip_adapter_weights`` calls), so it equals the one a UNet would hold.
    """
    from .configs import ip_adapter_sizes
    from .convert import export_reported
    from .export_onnx import DTYPES
    from .ip_adapter import cross_attention_layers, resolve_ip_adapter

    dtype = DTYPES[dtype_name]
    adapter = resolve_ip_adapter(request, unet, ip_adapter_sizes(arch))
    projection = unet._convert_ip_adapter_image_proj_to_diffusers(
        adapter.state_dict["image_proj"], low_cpu_mem_usage=False
    )
    projection.eval()
    projection.requires_grad_(False)
    parts = IPAdapterParts(
        adapter=adapter, projection=projection, layers=[name for name, _ in cross_attention_layers(unet)]
    )
    print(
        f"exporting the image side of a {adapter.kind} IP-Adapter -> {out} ({adapter.image_tokens} tokens, "
        f"attention id {adapter.attention_id[:16]}..., {dtype_name}, {device})"
    )
    checks = image_side_checks(parts, dtype, with_encoder, shapes)
    for module in (adapter.image_encoder, projection):
        module.to(device=device, dtype=dtype)
    results = [
        export_reported(factory, out / name, exporter, shapes.static, short_names, device, compact)
        for name, factory in image_side_factories(parts, shapes, dtype, device, with_encoder)
    ]
    write_image_side_files(parts, out, with_encoder)
    checks.run(out, "float16" if dtype == torch.float16 else "float32", "plain")
    return results
