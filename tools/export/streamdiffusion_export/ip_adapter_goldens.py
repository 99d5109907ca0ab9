"""``ip-adapter-goldens``: IP-Adapter goldens from diffusers' and transformers' own implementations.

The reference is PyTorch in float32 on the CPU:

* ``preprocess``: transformers' CLIP image processor (the model folder's
  ``feature_extractor/preprocessor_config.json``; the PIL backend, which ``CLIPImageProcessor`` is
  without torchvision) on each image file, as diffusers' ``encode_image`` calls it;
* ``image_encoder``: the adapter's transformers ``CLIPVisionModelWithProjection`` on both images
  (``image_embeds``, ``hidden_states[-2]``) and on all-zero pixels (diffusers' unconditional input of
  a Plus adapter);
* ``projection_regular`` / ``projection_plus``: diffusers' converted projections
  (``unet.encoder_hid_proj.image_projection_layers[0]`` after ``_load_ip_adapter_weights``) on those;
  the regular adapter's unconditional tokens come from zero embeds (diffusers' ``zeros_like``);
* ``unet``: ``UNet2DConditionModel`` from the checkpoint with the adapter installed by
  ``_load_ip_adapter_weights``, called with ``encoder_hidden_states`` = the text embeddings and
  ``added_cond_kwargs={"image_embeds": [embeds[:, None]]}`` (diffusers projects inside), the
  per-layer scales set as ``processor.scale = [s_l]``; the tokens diffusers computed are recorded.

Every case is also run in onnxruntime (CPU) on the exported models: on the recorded inputs
(``onnxruntime_max_abs_diff``) and, for the UNet, as a chain of ONNX models from the pixels (image
encoder -> projection -> UNet, ControlNet -> UNet; ``onnxruntime_chain_max_abs_diff``). The command
fails when a difference exceeds ``tolerance.abs`` = 1e-3 x max(1, max|reference|).

UNet inputs shared by every case (``unet.inputs``): ``sample`` [2,4,8,8] =
``torch.randn(generator=manual_seed(400))``, ``timestep`` [999, 499], ``text_embeddings`` [2,77,D] =
the text encoder on ``goldens.GOLDEN_PROMPTS``. Each case holds its ``image_tokens`` [2,N,D] and
``ip_adapter_scale`` [2,L] (and ControlNet residuals); the UNet's ``encoder_hidden_states`` is
``text_embeddings`` followed by ``image_tokens`` along the token axis. (The text part is stored once:
seven copies would cost ~180 KB of the fixture budget.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import TOOL_NAME, __version__
from .agreement import Agreement, cpu_session
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

# torch, diffusers, transformers load in make_ip_adapter_goldens (the case tables import without them).

LATENT_SIZE = (8, 8)
TIMESTEPS = (999.0, 499.0)
SEEDS = {"sample": 400}
#: Per-layer scales of ``regular_layers`` (scale order: down 0-5, up 6-14, mid 15 for SD 1.5/2.1).
LAYER_SCALES = (1.0, 1.0, 1.0, 1.0, 0.25, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
#: ``weighted_images``: image_embeds = 0.75 embeds(first image) + 0.25 embeds(second image).
IMAGE_WEIGHTS = (0.75, 0.25)
PLUS_SCALE = 0.7
#: ``per_entry_scales``: batch entry 0 at scale 1, entry 1 at 0.5 on every layer (not expressible in one
#: diffusers call: the reference runs diffusers once per entry).
PER_ENTRY_SCALES = (1.0, 0.5)
CONTROL_IMAGE_SIZE = 64


@dataclass(frozen=True)
class UNetCase:
    """One UNet golden: which adapter, which image per batch entry, which scales."""

    name: str
    adapter: str
    #: Per batch entry: an image name, ``uncond`` (zero embeds / zero pixels) or ``weighted``.
    images: tuple[str, str]
    #: Per batch entry, per layer (``None``: the same vector for both entries from ``layer_scales``).
    entry_scales: tuple[float, float] | None = None
    layer_scales: tuple[float, ...] | None = None
    uniform_scale: float = 1.0
    controlnet: bool = False
    plain: bool = False

    def scales(self, layer_count: int) -> list[list[float]]:
        """ip_adapter_scale rows [2][L]."""
        if self.entry_scales is not None:
            return [[scale] * layer_count for scale in self.entry_scales]
        if self.layer_scales is not None:
            if len(self.layer_scales) != layer_count:
                raise ValueError(f"{self.name}: {len(self.layer_scales)} layer scales for {layer_count} layers")
            return [list(self.layer_scales)] * 2
        return [[self.uniform_scale] * layer_count] * 2


def unet_cases(first: str, second: str) -> list[UNetCase]:
    """The UNet goldens for two images named ``first`` and ``second``."""
    both = (first, second)
    return [
        UNetCase("regular_scale1", "regular", both),
        UNetCase("regular_layers", "regular", both, layer_scales=LAYER_SCALES),
        UNetCase("regular_scale0", "regular", both, uniform_scale=0.0, plain=True),
        UNetCase("per_entry_scales", "regular", both, entry_scales=PER_ENTRY_SCALES),
        UNetCase("plus", "plus", both, uniform_scale=PLUS_SCALE),
        UNetCase("weighted_images", "regular", ("weighted", "weighted")),
        UNetCase("uncond_mixed", "regular", (first, "uncond")),
        UNetCase("controlnet", "regular", both, controlnet=True),
    ]


def _tensor(array: Any) -> dict[str, Any]:
    return encode_tensor(np.asarray(array, dtype=np.float32))


@dataclass
class _Adapter:
    """One adapter's PyTorch side: the UNet holding it, its projection, and the ONNX projection."""

    name: str
    kind: str
    unet: Any
    projection: Any
    projection_session: Any
    info: dict[str, Any]


def _load_adapter_unet(checkpoint: Path, adapter: Any) -> tuple[Any, Any]:
    """A fresh checkpoint UNet (float32, CPU) with the adapter installed by diffusers; and its projection."""
    from .checkpoint import load_pipeline_modules
    from .ip_adapter import install_ip_adapter

    unet = load_pipeline_modules(checkpoint).unet
    projection = install_ip_adapter(unet, adapter)
    return unet, projection


def _control_image(index: int) -> np.ndarray:
    from .controlnet_goldens import control_image

    return control_image(3, CONTROL_IMAGE_SIZE, CONTROL_IMAGE_SIZE, index)


def make_ip_adapter_goldens(
    checkpoint: Path,
    model_dir: Path,
    regular: Path,
    plus: tuple[Path, Path],
    controlnet_unet: Path,
    controlnet: tuple[Path, Path],
    images: list[Path],
    out_file: Path,
    plain_model: Path | None = None,
) -> dict[str, float]:
    """Writes the golden file; returns the largest onnxruntime difference per section and case.

    ``regular`` is the adapter ``model_dir`` was made with (a ``--save-ip-adapter`` folder or file),
    ``plus`` a Plus adapter and its ``ip-adapter-image`` folder (sharing the regular adapter's
    attention), ``controlnet_unet`` a folder with the same UNet exported with ControlNet inputs
    (``model.onnx``, ``ip_adapter.json``), ``controlnet`` a ControlNetModel checkpoint and its
    exported folder, ``images`` the two image files, ``plain_model`` (optional) a model folder with the
    same base weights and no adapter whose UNet takes ControlNet residuals (its ONNX UNet is checked
    against the ``plain`` output with zero residuals).
    """
    import diffusers
    import onnxruntime
    import torch
    import transformers
    from PIL import Image

    from .checkpoint import load_pipeline_modules, read_json
    from .controlnet import load_controlnet
    from .controlnet_goldens import CONTROL_IMAGE_FORMULA
    from .export_onnx import residual_names
    from .goldens import GOLDEN_PROMPTS, RELATIVE_TOLERANCE, _tokenize
    from .ip_adapter import (
        SCALE_INPUT,
        check_fits,
        cross_attention_layers,
        ip_layer_names,
        load_ip_adapter,
        set_ip_scales,
    )
    from .ip_adapter_export import UNET_INFO_FILE

    if len(images) != 2:
        raise ValueError(f"give two --image files, got {len(images)}")
    export = read_json(model_dir / "model_index.json").get("streamdiffusion_export", {})
    if export.get("dtype", "fp32") != "fp32" or not export.get("ip_adapter"):
        raise ValueError(f"{model_dir} must be an fp32 model folder with an IP-Adapter")
    unet_info = read_json(model_dir / "unet" / UNET_INFO_FILE)
    controlnet_info = read_json(controlnet_unet / UNET_INFO_FILE)
    plus_info = read_json(plus[1] / "image_projection" / "config.json")

    modules = load_pipeline_modules(checkpoint)
    unet_layers = cross_attention_layers(modules.unet)
    regular_adapter, plus_adapter = load_ip_adapter(regular), load_ip_adapter(plus[0])
    for adapter in (regular_adapter, plus_adapter):
        check_fits(adapter, unet_layers, int(modules.unet.config.cross_attention_dim))
    if (regular_adapter.kind, plus_adapter.kind) != ("regular", "plus"):
        raise ValueError(f"expected a regular and a Plus adapter, got {regular_adapter.kind} and {plus_adapter.kind}")
    for what, info in (
        ("model folder", unet_info),
        ("ControlNet UNet", controlnet_info),
        ("Plus projection", plus_info),
    ):
        if info["attention_id"] != regular_adapter.attention_id:
            raise ValueError(f"the {what}'s attention id differs from the regular adapter's")
    if plus_adapter.attention_id != regular_adapter.attention_id:
        raise ValueError(
            "the Plus adapter must share the regular adapter's to_k_ip/to_v_ip (--ip-adapter-attention-from)"
        )

    adapters: dict[str, _Adapter] = {}
    for name, adapter, folder in (
        ("regular", regular_adapter, model_dir),
        ("plus", plus_adapter, plus[1]),
    ):
        unet, projection = _load_adapter_unet(checkpoint, adapter)
        adapters[name] = _Adapter(
            name=name,
            kind=adapter.kind,
            unet=unet,
            projection=projection,
            projection_session=cpu_session(folder / "image_projection" / "model.onnx"),
            info={
                "kind": adapter.kind,
                "image_tokens": adapter.image_tokens,
                "source": adapter.source,
                "attention_id": adapter.attention_id,
                "projection": f"{folder.resolve().name}/image_projection",
            },
        )
    layers = ip_layer_names(adapters["regular"].unet)
    if layers != unet_info["layers"]:
        raise ValueError(f"{model_dir}/unet/{UNET_INFO_FILE} lists other layers than diffusers' order")
    # Both adapters share one image encoder (the regular one's: the Plus adapter was made for it).
    encoder = regular_adapter.image_encoder
    tolerance = RELATIVE_TOLERANCE["float32"]

    # --- preprocess -----------------------------------------------------------------------------
    from .ip_adapter import make_feature_extractor

    processor_class = type(make_feature_extractor(int(encoder.config.image_size)))
    processor = processor_class.from_pretrained(str(model_dir / "feature_extractor"))
    names = [path.stem for path in images]
    pixel_values: dict[str, np.ndarray] = {}
    image_info: dict[str, Any] = {}
    for name, path in zip(names, images):
        with Image.open(path) as image:
            image.load()
            pixel_values[name] = np.asarray(processor(images=image, return_tensors="np").pixel_values, np.float32)
            image_info[name] = {"file": path.name, "width": image.width, "height": image.height, "mode": image.mode}
            if image.mode != "RGB":
                image_info[name]["to_rgb"] = "PIL Image.convert('RGB') (transformers' convert_to_rgb): alpha dropped"
    preprocess = {
        "reference": f"transformers {transformers.__version__} {processor_class.__name__}.from_pretrained"
        "(model/feature_extractor)(images=PIL image, return_tensors='np').pixel_values",
        "preprocessor_config": f"{model_dir.resolve().name}/feature_extractor/preprocessor_config.json",
        "images": image_info,
        "outputs": {name: _tensor(values) for name, values in pixel_values.items()},
    }
    print(f"  preprocess: {', '.join(f'{name} {list(values.shape)}' for name, values in pixel_values.items())}")

    # --- image encoder --------------------------------------------------------------------------
    pixels = torch.from_numpy(np.concatenate([pixel_values[name] for name in names]))
    zeros = torch.zeros(1, *pixels.shape[1:])
    with torch.no_grad():
        encoded = encoder(pixel_values=pixels, output_hidden_states=True)
        embeds, penultimate = encoded.image_embeds, encoded.hidden_states[-2]
        zero_penultimate = encoder(pixel_values=zeros, output_hidden_states=True).hidden_states[-2]
    encoder_session = cpu_session(model_dir / "image_encoder" / "model.onnx")
    encoder_agreement = Agreement(tolerance)
    got_embeds, got_penultimate = encoder_session.run(None, {"pixel_values": pixels.numpy()})
    encoder_agreement.check("images", "image_embeds", embeds.numpy(), got_embeds)
    encoder_agreement.check("images", "penultimate_hidden_states", penultimate.numpy(), got_penultimate)
    (got_zero,) = encoder_session.run(["penultimate_hidden_states"], {"pixel_values": zeros.numpy()})
    encoder_agreement.check("zeros", "penultimate_hidden_states", zero_penultimate.numpy(), got_zero)
    image_encoder_section = {
        "reference": f"transformers {transformers.__version__} CLIPVisionModelWithProjection, float32 cpu, eager "
        "attention: image_embeds and hidden_states[-2]",
        "model": f"{model_dir.resolve().name}/image_encoder",
        "cases": {
            "images": {
                "images": names,
                "inputs": {"pixel_values": _tensor(pixels)},
                "outputs": {"image_embeds": _tensor(embeds), "penultimate_hidden_states": _tensor(penultimate)},
                **encoder_agreement.summary("images"),
            },
            "zeros": {
                "inputs": {"pixel_values": _tensor(zeros)},
                "outputs": {"penultimate_hidden_states": _tensor(zero_penultimate)},
                **encoder_agreement.summary("zeros"),
            },
        },
    }
    _print_section("image_encoder", encoder_agreement)

    # --- projections ----------------------------------------------------------------------------
    projection_inputs = {
        "regular": {"images": embeds, "uncond": torch.zeros(1, embeds.shape[1])},
        "plus": {"images": penultimate, "uncond": zero_penultimate},
    }
    projection_sections: dict[str, Any] = {}
    for name, adapter in adapters.items():
        agreement = Agreement(tolerance)
        cases = {}
        for case, inputs in projection_inputs[name].items():
            with torch.no_grad():
                tokens = adapter.projection(inputs)
            (actual,) = adapter.projection_session.run(None, {"image_embeds": inputs.numpy()})
            agreement.check(case, "image_tokens", tokens.numpy(), actual)
            cases[case] = {
                "inputs": {"image_embeds": _tensor(inputs)},
                "outputs": {"image_tokens": _tensor(tokens)},
                **agreement.summary(case),
            }
        projection_sections[f"projection_{name}"] = {
            "reference": f"diffusers {type(adapter.projection).__name__} "
            "(unet.encoder_hid_proj.image_projection_layers[0] after _load_ip_adapter_weights), float32 cpu",
            "model": adapter.info["projection"],
            "input": "image_embeds" if name == "regular" else "penultimate_hidden_states",
            "cases": cases,
        }
        _print_section(f"projection_{name}", agreement)

    # --- UNet -----------------------------------------------------------------------------------
    input_ids = _tokenize(model_dir / "tokenizer", GOLDEN_PROMPTS)
    with torch.no_grad():
        text = modules.text_encoder(input_ids=input_ids.to(torch.int64)).last_hidden_state.float()
    text_session = cpu_session(model_dir / "text_encoder" / "model.onnx")
    (onnx_text,) = text_session.run(["last_hidden_state"], {"input_ids": input_ids.numpy()})
    text_diff = float(np.max(np.abs(onnx_text - text.numpy())))
    sample = torch.randn(2, 4, *LATENT_SIZE, generator=torch.Generator().manual_seed(SEEDS["sample"]))
    timestep = torch.tensor(TIMESTEPS, dtype=torch.float32)
    layer_count = len(layers)

    torch_controlnet = load_controlnet(controlnet[0])
    controlnet_session = cpu_session(controlnet[1] / "model.onnx")
    control = torch.from_numpy(np.stack([_control_image(0)] * 2))
    unet_sessions = {
        "ip": cpu_session(model_dir / "unet" / "model.onnx"),
        "controlnet": cpu_session(controlnet_unet / "model.onnx"),
    }
    unet_models = {"ip": f"{model_dir.resolve().name}/unet", "controlnet": controlnet_unet.resolve().name}
    plain_unet = load_pipeline_modules(checkpoint).unet
    plain_session = cpu_session(plain_model / "unet" / "model.onnx") if plain_model is not None else None
    weighted = IMAGE_WEIGHTS[0] * embeds[0] + IMAGE_WEIGHTS[1] * embeds[1]

    def projection_input(adapter: str, image: str) -> torch.Tensor:
        """One batch entry's projection input, as diffusers' prepare_ip_adapter_image_embeds makes it."""
        if adapter == "plus":
            return zero_penultimate[0] if image == "uncond" else penultimate[names.index(image)]
        if image == "uncond":
            return torch.zeros_like(embeds[0])
        if image == "weighted":
            return weighted
        return embeds[names.index(image)]

    def onnx_chain_tokens(adapter: str, images_of_case: tuple[str, str]) -> np.ndarray:
        """Image tokens computed by the ONNX image encoder and projection from the preprocessed pixels."""
        onnx_embeds, onnx_penultimate = encoder_session.run(None, {"pixel_values": pixels.numpy()})
        (onnx_zero,) = encoder_session.run(["penultimate_hidden_states"], {"pixel_values": zeros.numpy()})
        rows = []
        for image in images_of_case:
            if adapter == "plus":
                rows.append(onnx_zero[0] if image == "uncond" else onnx_penultimate[names.index(image)])
            elif image == "uncond":
                rows.append(np.zeros_like(onnx_embeds[0]))
            elif image == "weighted":
                weights = [np.float32(weight) for weight in IMAGE_WEIGHTS]
                rows.append(weights[0] * onnx_embeds[0] + weights[1] * onnx_embeds[1])
            else:
                rows.append(onnx_embeds[names.index(image)])
        (tokens,) = adapters[adapter].projection_session.run(None, {"image_embeds": np.stack(rows)})
        return tokens

    agreement = Agreement(tolerance)
    cases: dict[str, Any] = {}
    controlnet_record: dict[str, Any] = {}
    for case in unet_cases(names[0], names[1]):
        adapter = adapters[case.adapter]
        scales = case.scales(layer_count)
        image_embeds = torch.stack([projection_input(case.adapter, image) for image in case.images])[:, None]
        residuals: list[torch.Tensor] = []
        if case.controlnet:
            with torch.no_grad():
                down, mid = torch_controlnet(sample, timestep, text, control, conditioning_scale=1.0, return_dict=False)
            residuals = [*down, mid]
        # diffusers in one call when both rows are equal, else once per batch entry.
        entries = [slice(0, 2)] if scales[0] == scales[1] else [slice(0, 1), slice(1, 2)]
        outputs, tokens = [], []
        for entry in entries:
            captured: list[torch.Tensor] = []
            hook = adapter.unet.encoder_hid_proj.register_forward_hook(
                lambda _module, _inputs, output, captured=captured: captured.append(output[0])
            )
            set_ip_scales(adapter.unet, scales[entry.start])
            extra = {}
            if residuals:
                extra = {
                    "down_block_additional_residuals": tuple(residual[entry] for residual in residuals[:-1]),
                    "mid_block_additional_residual": residuals[-1][entry],
                }
            try:
                with torch.no_grad():
                    outputs.append(
                        adapter.unet(
                            sample[entry],
                            timestep[entry],
                            text[entry],
                            added_cond_kwargs={"image_embeds": [image_embeds[entry]]},
                            return_dict=False,
                            **extra,
                        )[0]
                    )
            finally:
                hook.remove()
            # [batch, 1 image, N, D] -> [batch, N, D]
            tokens.append(captured[0].reshape(captured[0].shape[0], -1, captured[0].shape[-1]))
        expected = torch.cat(outputs).numpy()
        image_tokens = torch.cat(tokens)
        scale_rows = np.asarray(scales, dtype=np.float32)
        residual_feeds = {
            name: residual.numpy() for name, residual in zip(residual_names(len(residuals) - 1), residuals)
        }
        feeds = {
            "sample": sample.numpy(),
            "timestep": timestep.numpy(),
            "encoder_hidden_states": torch.cat([text, image_tokens], dim=1).numpy(),
            SCALE_INPUT: scale_rows,
            **residual_feeds,
        }
        session = unet_sessions["controlnet" if case.controlnet else "ip"]
        (actual,) = session.run(["out_sample"], feeds)
        agreement.check(case.name, "out_sample", expected, actual)

        # The ONNX chain: image encoder -> projection (-> ControlNet) -> UNet, from the pixels.
        chain_feeds = dict(feeds)
        chain_feeds["encoder_hidden_states"] = np.concatenate(
            [text.numpy(), onnx_chain_tokens(case.adapter, case.images)], axis=1
        )
        if case.controlnet:
            chain_residuals = controlnet_session.run(
                None,
                {"sample": sample.numpy(), "timestep": timestep.numpy(), "encoder_hidden_states": text.numpy(),
                 "controlnet_cond": control.numpy()},
            )  # fmt: skip
            chain_feeds.update(zip(residual_names(len(residuals) - 1), chain_residuals))
        (chain,) = session.run(["out_sample"], chain_feeds)
        agreement.check(case.name, "out_sample_onnxruntime_chain", expected, chain, magnitude_key="out_sample")

        record: dict[str, Any] = {
            "model": unet_models["controlnet" if case.controlnet else "ip"],
            "adapter": case.adapter,
            "images": list(case.images),
            "inputs": {
                "image_tokens": _tensor(image_tokens),
                SCALE_INPUT: _tensor(scale_rows),
                **{name: _tensor(value) for name, value in residual_feeds.items()},
            },
            "outputs": {"out_sample": _tensor(expected)},
        }
        if case.images[0] == "weighted":
            record["image_weights"] = dict(zip(names, IMAGE_WEIGHTS))
            record["image_embeds"] = _tensor(image_embeds[:, 0])
        if case.plain:
            with torch.no_grad():
                plain = plain_unet(sample, timestep, text, return_dict=False)[0].numpy()
            record["outputs"]["plain_out_sample"] = _tensor(plain)
            agreement.check(case.name, "out_sample_vs_plain", plain, actual, magnitude_key="plain_out_sample")
            if plain_session is not None:
                zero_residuals = {
                    value.name: np.zeros(
                        [2 if dim == "batch" else _residual_dim(dim, LATENT_SIZE) for dim in value.shape], np.float32
                    )
                    for value in plain_session.get_inputs()[3:]
                }
                (plain_actual,) = plain_session.run(
                    ["out_sample"],
                    {"sample": sample.numpy(), "timestep": timestep.numpy(), "encoder_hidden_states": text.numpy(),
                     **zero_residuals},
                )  # fmt: skip
                agreement.check(
                    case.name, "plain_model_out_sample", plain, plain_actual, magnitude_key="plain_out_sample"
                )
        if case.controlnet:
            image = _control_image(0)
            controlnet_record = {
                "controlnet": controlnet[1].resolve().name,
                "conditioning_scale": 1.0,
                "controlnet_cond_dims": [2, 3, CONTROL_IMAGE_SIZE, CONTROL_IMAGE_SIZE],
                "control_image_formula": CONTROL_IMAGE_FORMULA,
                "control_image_index": 0,
                "control_image_sum": float(image.astype(np.float64).sum()),
                "control_image_first": [float(value) for value in image.reshape(-1)[:8]],
                "controlnet_input": "encoder_hidden_states = text_embeddings (the 77 text tokens only)",
            }
            record.update(controlnet_record)
        record["ip_scale_rows_equal"] = scales[0] == scales[1]
        record.update(agreement.summary(case.name))
        cases[case.name] = record
        diffs = agreement.diffs[case.name]
        print(f"  unet/{case.name}: " + ", ".join(f"{key} {value:.3g}" for key, value in diffs.items()))

    golden = {
        "tool": f"{TOOL_NAME} {__version__}",
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "diffusers": diffusers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "arch": export.get("arch"),
        "model": model_dir.resolve().name,
        "model_dtype": "float32",
        "adapters": {name: adapter.info for name, adapter in adapters.items()},
        "reference": "pytorch float32 cpu: transformers CLIPImageProcessor and CLIPVisionModelWithProjection; "
        "diffusers UNet2DConditionModel with the IP-Adapter installed by _load_ip_adapter_weights",
        "preprocess": preprocess,
        "image_encoder": image_encoder_section,
        **projection_sections,
        "unet": {
            "reference": "diffusers UNet2DConditionModel(sample, timestep, encoder_hidden_states=text_embeddings, "
            "added_cond_kwargs={'image_embeds': [projection input [batch, 1, ...]]}) with processor.scale = [s_l] "
            "per IP layer; rows that differ run diffusers once per batch entry",
            "models": unet_models,
            "layers": layers,
            "encoder_hidden_states": "text_embeddings followed by the case's image_tokens along axis 1 [2, 77 + N, D]",
            "prompts": list(GOLDEN_PROMPTS),
            "input_ids": encode_tensor(input_ids.numpy()),
            "seeds": SEEDS,
            "inputs": {
                "sample": _tensor(sample),
                "timestep": _tensor(timestep),
                "text_embeddings": _tensor(text),
            },
            "text_encoder_onnxruntime_max_abs_diff": text_diff,
            "layer_scales": list(LAYER_SCALES),
            "per_entry_scales": list(PER_ENTRY_SCALES),
            "cases": cases,
        },
    }
    write_text_maybe_gzip(out_file, dumps_json(golden))
    failures = encoder_agreement.failures + agreement.failures
    if text_diff > tolerance * max(1.0, float(np.max(np.abs(text.numpy())))):
        failures.append(f"text encoder: max abs diff {text_diff:.3g}")
    if failures:
        raise RuntimeError("onnxruntime does not reproduce PyTorch:\n  " + "\n  ".join(failures))
    report = {f"unet/{name}": max(values.values()) for name, values in agreement.diffs.items()}
    report.update({f"image_encoder/{name}": max(values.values()) for name, values in encoder_agreement.diffs.items()})
    return report


def _residual_dim(dim: Any, latent: tuple[int, int]) -> int:
    """The size of a named residual dim (``height_div_4``, ``width``) for a latent size, or a fixed size."""
    if isinstance(dim, int):
        return dim
    base, _, factor = dim.partition("_div_")
    size = latent[0] if base == "height" else latent[1]
    return size // int(factor or 1)


def _print_section(name: str, agreement: Agreement) -> None:
    print(f"  {name}: " + ", ".join(f"{case} {max(values.values()):.3g}" for case, values in agreement.diffs.items()))
