"""IP-Adapters: reading h94/IP-Adapter files, making seeded random ones, installing them with diffusers.

An IP-Adapter is kept in the **original** format of the h94/IP-Adapter files, the one diffusers'
``load_ip_adapter`` reads::

    {"image_proj": {...}, "ip_adapter": {"1.to_k_ip.weight", "1.to_v_ip.weight", "3.to_k_ip.weight", ...}}

(``.bin``: that dict pickled; ``.safetensors``: flat keys prefixed ``image_proj.`` / ``ip_adapter.``).
It is installed into a diffusers ``UNet2DConditionModel`` with diffusers' own
``unet._load_ip_adapter_weights([state_dict])``, which converts the image projection
(``ImageProjection`` for the regular adapter, ``IPAdapterPlusImageProjection`` for Plus) and gives
every cross-attention an ``IPAdapterAttnProcessor2_0`` holding ``to_k_ip``/``to_v_ip``. Everything
exported comes from those diffusers modules.

**Layer order.** diffusers maps the file's keys ``1.``, ``3.``, ``5.``, ... onto the cross-attention
processors in ``unet.attn_processors`` order, which is the order the UNet registers its children:
``down_blocks`` (created first), then ``up_blocks`` (its empty ``ModuleList`` is registered right
after ``down_blocks``), then ``mid_block``. For SD 1.5/2.1 that is down 0-5, up 6-14, mid 15: the
numbering ComfyUI_IPAdapter_plus uses for its per-layer weights (input 0-5, output 6-14, middle 15).
:func:`ip_layer_names` returns the names in that order and :func:`check_layer_order` verifies it.

Only the regular (4 tokens) and Plus (Resampler, 16 tokens) adapters are supported; Full-Face and
FaceID files are refused with a message naming them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import TOOL_NAME
from .configs import IPAdapterSizes
from .environment import prepare_diffusers_import

#: Values of ``--ip-adapter-random`` and the ``kind`` recorded in the model folder.
IP_ADAPTER_KINDS = ("regular", "plus")
#: Image tokens of the regular adapter (diffusers' ``ImageProjection`` with ``num_image_text_embeds=4``).
REGULAR_TOKENS = 4
#: Image tokens of a random Plus adapter (h94's Plus adapters: ``latents`` [1, 16, hidden]).
PLUS_TOKENS = 16
#: Blocks of the Resampler (diffusers' ``IPAdapterPlusImageProjection`` default depth; its converter
#: builds that many).
PLUS_DEPTH = 4
#: Head width of the Resampler's attention: diffusers' converter fixes it (heads = to_q rows // 64).
PLUS_DIM_HEAD = 64
#: Text tokens in front of the image tokens in the UNet's ``encoder_hidden_states``.
TEXT_TOKENS = 77
#: The UNet input holding the per-batch-entry, per-layer IP-Adapter scales.
SCALE_INPUT = "ip_adapter_scale"
#: File of a saved adapter (``--save-ip-adapter``), next to its ``image_encoder/`` folder.
SAVED_ADAPTER_FILE = "ip-adapter.safetensors"
SAVED_IMAGE_ENCODER_FOLDER = "image_encoder"

#: Standard deviation of the random LayerNorm weights around 1 and of their biases around 0.
_NORM_STD = 0.1
#: Standard deviation of the random projection biases.
_BIAS_STD = 0.02
#: Gain of the random to_k_ip/to_v_ip weights over 1/sqrt(fan_in): enough that the image tokens
#: visibly change a micro UNet's output (scale 1 vs 0 differ by ~0.1 there).
_IP_ATTENTION_GAIN = 2.0


@dataclass
class IPAdapter:
    """An IP-Adapter in the original format, its image encoder, and where it came from."""

    state_dict: dict[str, dict[str, torch.Tensor]]
    kind: str
    #: The file name, or ``random-init seed N``.
    source: str
    #: transformers ``CLIPVisionModelWithProjection`` (float32, CPU, eager attention).
    image_encoder: torch.nn.Module

    @property
    def image_tokens(self) -> int:
        """Tokens the projection makes per image: 4 (regular) or the Resampler's query count (16)."""
        if self.kind == "regular":
            return REGULAR_TOKENS
        return int(self.state_dict["image_proj"]["latents"].shape[1])

    @property
    def projection_input(self) -> str:
        """The image-encoder output the projection takes: ``image_embeds`` or ``penultimate_hidden_states``."""
        return "image_embeds" if self.kind == "regular" else "penultimate_hidden_states"

    @property
    def cross_attention_dim(self) -> int:
        """Width D of the image tokens (the UNet's cross-attention width)."""
        image_proj = self.state_dict["image_proj"]
        if self.kind == "regular":
            return int(image_proj["proj.weight"].shape[0]) // REGULAR_TOKENS
        return int(image_proj["proj_out.weight"].shape[0])

    @property
    def attention_id(self) -> str:
        """sha256 of the to_k_ip/to_v_ip weights (:func:`attention_id_of_state_dict`)."""
        return attention_id_of_state_dict(self.state_dict)


@dataclass(frozen=True)
class IPAdapterRequest:
    """How an export gets its IP-Adapter: a file, or a seeded random one (command-line options)."""

    #: ``--ip-adapter``: an h94-format ``.bin``/``.safetensors`` file, or a ``--save-ip-adapter`` folder.
    file: Path | None = None
    #: ``--ip-adapter-random``: ``regular`` or ``plus``.
    random_kind: str | None = None
    #: ``--ip-adapter-seed``: the random adapter's seed; its random image encoder uses seed + 1.
    seed: int = 0
    #: ``--image-encoder``: a transformers CLIPVisionModelWithProjection folder (else random, or the
    #: ``image_encoder/`` of a saved folder).
    image_encoder: Path | None = None
    #: ``--ip-adapter-attention-from``: copy to_k_ip/to_v_ip from this adapter (file or saved folder).
    attention_from: Path | None = None
    #: ``--save-ip-adapter``: keep the adapter (safetensors) and its image encoder here.
    save_to: Path | None = None

    def validate(self) -> None:
        """Raises ValueError for contradictory options."""
        if (self.file is None) == (self.random_kind is None):
            raise ValueError("give either --ip-adapter FILE or --ip-adapter-random regular|plus")
        if self.random_kind is not None and self.random_kind not in IP_ADAPTER_KINDS:
            raise ValueError(f"--ip-adapter-random must be one of {', '.join(IP_ADAPTER_KINDS)}")
        if self.attention_from is not None and self.random_kind is None:
            raise ValueError("--ip-adapter-attention-from only goes with --ip-adapter-random")


# --- files -------------------------------------------------------------------------------------


def _adapter_file(path: Path) -> Path:
    """The weights file of ``path``: the path itself, or ``ip-adapter.safetensors`` in a saved folder."""
    if path.is_dir():
        path = path / SAVED_ADAPTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"IP-Adapter file not found: {path}")
    return path


def read_ip_adapter_file(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """Reads an h94-format IP-Adapter (``.bin``/``.pt`` or ``.safetensors``, or a saved folder).

    Returns the state dict ``{"image_proj": {...}, "ip_adapter": {...}}`` (as diffusers'
    ``load_ip_adapter`` builds it) and the safetensors metadata (empty for pickles).
    """
    path = _adapter_file(path)
    metadata: dict[str, str] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        state_dict: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = dict(file.metadata() or {})
            for key in file.keys():
                for part in state_dict:
                    if key.startswith(f"{part}."):
                        state_dict[part][key[len(part) + 1 :]] = file.get_tensor(key)
    else:
        state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict) or not state_dict.get("image_proj") or not state_dict.get("ip_adapter"):
        raise ValueError(f"{path} is not an IP-Adapter in the h94 format (image_proj and ip_adapter weights)")
    return {part: dict(state_dict[part]) for part in ("image_proj", "ip_adapter")}, metadata


def ip_adapter_kind(state_dict: dict[str, dict[str, torch.Tensor]]) -> str:
    """``regular`` or ``plus``, told apart by the keys diffusers' converter looks at; others raise ValueError."""
    image_proj = state_dict["image_proj"]
    if "proj.weight" in image_proj:
        return "regular"
    if "proj.3.weight" in image_proj:
        raise ValueError("IP-Adapter Full Face is not supported (only the regular and Plus adapters)")
    if "perceiver_resampler.proj_in.weight" in image_proj or "norm.weight" in image_proj:
        raise ValueError("IP-Adapter FaceID is not supported (only the regular and Plus adapters)")
    if "latents" in image_proj and "proj_in.weight" in image_proj:
        return "plus"
    raise ValueError("unrecognised IP-Adapter image projection (expected proj.* or a Resampler's latents)")


def _ip_attention_ids(ip_adapter: dict[str, torch.Tensor]) -> list[int]:
    """The key ids (1, 3, 5, ...) of the to_k_ip/to_v_ip pairs, in order."""
    ids = sorted({int(key.split(".")[0]) for key in ip_adapter if key.endswith(".to_k_ip.weight")})
    for key_id in ids:
        if f"{key_id}.to_v_ip.weight" not in ip_adapter:
            raise ValueError(f"IP-Adapter has {key_id}.to_k_ip.weight but no {key_id}.to_v_ip.weight")
    return ids


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().astype("<f4").tobytes()


def attention_id_of_state_dict(state_dict: dict[str, dict[str, torch.Tensor]]) -> str:
    """sha256 (hex) of every to_k_ip and to_v_ip weight as float32 little-endian bytes.

    Layer by layer in scale order (the file's key ids 1, 3, 5, ...), each layer's ``to_k_ip`` then
    its ``to_v_ip``: two adapters with the same id put the same image attention into the UNet, so
    one's image tokens work with the other's UNet.
    """
    ip_adapter = state_dict["ip_adapter"]
    digest = hashlib.sha256()
    for key_id in _ip_attention_ids(ip_adapter):
        digest.update(_tensor_bytes(ip_adapter[f"{key_id}.to_k_ip.weight"]))
        digest.update(_tensor_bytes(ip_adapter[f"{key_id}.to_v_ip.weight"]))
    return digest.hexdigest()


def save_ip_adapter(adapter: IPAdapter, folder: Path) -> Path:
    """Writes ``folder/ip-adapter.safetensors`` (h94 safetensors layout) and ``folder/image_encoder/``.

    The safetensors metadata keeps ``kind`` and ``source`` (``random-init seed N``), so a model folder
    converted from the saved file records the same source as the one made with the random adapter.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{part}.{key}": value.detach().to("cpu").contiguous()
        for part in ("image_proj", "ip_adapter")
        for key, value in adapter.state_dict[part].items()
    }
    path = folder / SAVED_ADAPTER_FILE
    save_file(
        tensors, str(path), metadata={"format": "pt", "tool": TOOL_NAME, "kind": adapter.kind, "source": adapter.source}
    )
    adapter.image_encoder.save_pretrained(str(folder / SAVED_IMAGE_ENCODER_FOLDER))
    return path


# --- image encoders --------------------------------------------------------------------------------


def load_image_encoder(folder: Path) -> torch.nn.Module:
    """Loads a transformers ``CLIPVisionModelWithProjection`` folder in float32, eager attention."""
    from transformers import CLIPVisionModelWithProjection

    from .checkpoint import _from_pretrained, read_json

    architectures = read_json(folder / "config.json").get("architectures") or []
    if architectures and "CLIPVisionModelWithProjection" not in architectures:
        raise ValueError(f"{folder} holds a {architectures[0]}; expected a CLIPVisionModelWithProjection")
    try:
        encoder = _from_pretrained(
            CLIPVisionModelWithProjection, folder, dtype=torch.float32, attn_implementation="eager"
        )
    except TypeError:
        # transformers 4.x before 4.56 spells the dtype argument torch_dtype.
        encoder = _from_pretrained(
            CLIPVisionModelWithProjection, folder, torch_dtype=torch.float32, attn_implementation="eager"
        )
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder


def random_image_encoder(config: dict[str, Any], seed: int) -> torch.nn.Module:
    """A ``CLIPVisionModelWithProjection`` with transformers' initialisation from ``seed`` (eager attention)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vision_config = CLIPVisionConfig(**config)
    vision_config._attn_implementation = "eager"
    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(vision_config)
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder


# --- random adapters --------------------------------------------------------------------------------


def cross_attention_layers(unet: torch.nn.Module) -> list[tuple[str, int]]:
    """(name, width) of every cross-attention layer in ``unet.attn_processors`` order.

    The width is what diffusers' ``_convert_ip_adapter_attn_to_diffusers`` gives ``to_k_ip``/``to_v_ip``
    (out features; in features = the cross-attention width): the channels of the block the layer sits
    in. Works on a UNet built on the meta device. Names drop the ``.processor`` suffix.
    """
    config = unet.config
    layers = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name or name.startswith("encoder_hid_proj"):
            continue
        if name.startswith("mid_block"):
            width = config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            width = list(reversed(config.block_out_channels))[int(name[len("up_blocks.")])]
        elif name.startswith("down_blocks"):
            width = config.block_out_channels[int(name[len("down_blocks.")])]
        else:
            raise ValueError(f"cross-attention {name} is in no down, up or mid block")
        layers.append((name[: -len(".processor")], int(width)))
    return layers


class _Draws:
    """Seeded random tensors for one adapter, drawn in a fixed order (so a seed always gives the same)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator) * std

    def linear(self, out_features: int, in_features: int, gain: float = 1.0) -> torch.Tensor:
        """A weight of variance gain²/fan_in (outputs keep the inputs' scale)."""
        return self.normal(out_features, in_features, std=gain / math.sqrt(in_features))

    def layer_norm(self, prefix: str, width: int) -> dict[str, torch.Tensor]:
        """LayerNorm weights near 1 and biases near 0."""
        return {
            f"{prefix}.weight": 1.0 + self.normal(width, std=_NORM_STD),
            f"{prefix}.bias": self.normal(width, std=_NORM_STD),
        }


def _random_regular_projection(
    draws: _Draws, cross_attention_dim: int, image_embed_dim: int
) -> dict[str, torch.Tensor]:
    """h94's regular ``image_proj``: ``proj`` [4·D, P] (+ bias), then a LayerNorm ``norm`` over D."""
    return {
        "proj.weight": draws.linear(REGULAR_TOKENS * cross_attention_dim, image_embed_dim),
        "proj.bias": draws.normal(REGULAR_TOKENS * cross_attention_dim, std=_BIAS_STD),
        **draws.layer_norm("norm", cross_attention_dim),
    }


def _random_plus_projection(
    draws: _Draws, cross_attention_dim: int, encoder_width: int, hidden: int, heads: int
) -> dict[str, torch.Tensor]:
    """h94's Plus ``image_proj`` (the Resampler), keys and shapes as diffusers' converter expects them.

    ``latents`` [1, 16, hidden]; ``proj_in`` [hidden, encoder width]; per block ``i`` of 4:
    ``layers.i.0.norm1``/``norm2`` (LayerNorms of the image features and the latents), ``to_q``
    [64·heads, hidden], ``to_kv`` [2·64·heads, hidden], ``to_out`` [hidden, 64·heads] (no biases), then the
    feed-forward ``layers.i.1.0`` (LayerNorm), ``1.1`` [4·hidden, hidden], ``1.3`` [hidden, 4·hidden];
    ``proj_out`` [D, hidden] (+ bias) and the LayerNorm ``norm_out`` over D.
    """
    inner = PLUS_DIM_HEAD * heads
    weights = {
        "latents": draws.normal(1, PLUS_TOKENS, hidden, std=hidden**-0.5),
        "proj_in.weight": draws.linear(hidden, encoder_width),
        "proj_in.bias": draws.normal(hidden, std=_BIAS_STD),
    }
    for index in range(PLUS_DEPTH):
        prefix = f"layers.{index}"
        weights.update(draws.layer_norm(f"{prefix}.0.norm1", hidden))
        weights.update(draws.layer_norm(f"{prefix}.0.norm2", hidden))
        weights[f"{prefix}.0.to_q.weight"] = draws.linear(inner, hidden)
        weights[f"{prefix}.0.to_kv.weight"] = draws.linear(2 * inner, hidden)
        weights[f"{prefix}.0.to_out.weight"] = draws.linear(hidden, inner)
        weights.update(draws.layer_norm(f"{prefix}.1.0", hidden))
        weights[f"{prefix}.1.1.weight"] = draws.linear(4 * hidden, hidden)
        weights[f"{prefix}.1.3.weight"] = draws.linear(hidden, 4 * hidden)
    weights["proj_out.weight"] = draws.linear(cross_attention_dim, hidden)
    weights["proj_out.bias"] = draws.normal(cross_attention_dim, std=_BIAS_STD)
    weights.update(draws.layer_norm("norm_out", cross_attention_dim))
    return weights


def random_ip_adapter_state_dict(
    kind: str,
    seed: int,
    layer_widths: list[int],
    cross_attention_dim: int,
    encoder_config: Any,
    sizes: IPAdapterSizes,
    attention_from: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """An original-format IP-Adapter state dict of seeded normal values.

    Linear weights have variance 1/fan_in (to_k_ip/to_v_ip: (2/fan_in)², so the image attention is
    clearly visible in a tiny UNet), LayerNorm weights 1 ± 0.1, biases small. ``layer_widths`` are
    the out features of each cross-attention's to_k_ip/to_v_ip in scale order; ``attention_from``
    (another adapter's ``ip_adapter`` part) replaces the random ones, so both adapters share one
    attention (and attention id). The projection is drawn first, so it does not depend on that.
    """
    if kind not in IP_ADAPTER_KINDS:
        raise ValueError(f"IP-Adapter kind must be one of {', '.join(IP_ADAPTER_KINDS)}, got {kind!r}")
    draws = _Draws(seed)
    if kind == "regular":
        image_proj = _random_regular_projection(draws, cross_attention_dim, int(encoder_config.projection_dim))
    else:
        image_proj = _random_plus_projection(
            draws, cross_attention_dim, int(encoder_config.hidden_size), sizes.plus_hidden_dims, sizes.plus_heads
        )
    if attention_from is not None:
        ids = _ip_attention_ids(attention_from)
        shapes = [tuple(attention_from[f"{key_id}.to_k_ip.weight"].shape) for key_id in ids]
        if shapes != [(width, cross_attention_dim) for width in layer_widths]:
            raise ValueError(f"the attention to copy has to_k_ip shapes {shapes}; this UNet needs {layer_widths} x D")
        ip_adapter = {
            f"{key_id}.to_{part}_ip.weight": attention_from[f"{key_id}.to_{part}_ip.weight"].detach().clone()
            for key_id in ids
            for part in ("k", "v")
        }
    else:
        ip_adapter = {}
        for index, width in enumerate(layer_widths):
            for part in ("k", "v"):
                weight = draws.linear(width, cross_attention_dim, gain=_IP_ATTENTION_GAIN)
                ip_adapter[f"{2 * index + 1}.to_{part}_ip.weight"] = weight
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


# --- resolving a request -----------------------------------------------------------------------------


def _file_source(path: Path, metadata: dict[str, str]) -> str:
    """What ``source`` records: the seed of an adapter this tool saved, else the file name."""
    if metadata.get("tool") == TOOL_NAME and metadata.get("source"):
        return metadata["source"]
    return _adapter_file(path).name


def _image_encoder_for_file(path: Path, image_encoder: Path | None) -> torch.nn.Module:
    if image_encoder is not None:
        return load_image_encoder(image_encoder)
    saved = path / SAVED_IMAGE_ENCODER_FOLDER if path.is_dir() else None
    if saved is not None and saved.is_dir():
        return load_image_encoder(saved)
    raise ValueError(
        "--ip-adapter needs --image-encoder <CLIPVisionModelWithProjection folder> "
        "(h94/IP-Adapter models/image_encoder for the SD 1.5 adapters)"
    )


def load_ip_adapter(path: Path, image_encoder: Path | None = None) -> IPAdapter:
    """Reads an adapter file (or ``--save-ip-adapter`` folder) and its image encoder.

    ``image_encoder`` defaults to the ``image_encoder/`` of a saved folder.
    """
    state_dict, metadata = read_ip_adapter_file(path)
    return IPAdapter(
        state_dict=state_dict,
        kind=ip_adapter_kind(state_dict),
        source=_file_source(path, metadata),
        image_encoder=_image_encoder_for_file(path, image_encoder),
    )


def resolve_ip_adapter(request: IPAdapterRequest, unet: torch.nn.Module, sizes: IPAdapterSizes) -> IPAdapter:
    """Reads or makes the requested adapter for ``unet`` (which may live on the meta device).

    Checks that it fits the UNet (cross-attention width, layer count) and its image encoder; saves it
    with ``request.save_to``.
    """
    request.validate()
    layers = cross_attention_layers(unet)
    cross_attention_dim = int(unet.config.cross_attention_dim)
    if request.file is not None:
        print(f"reading IP-Adapter {request.file}")
        adapter = load_ip_adapter(request.file, request.image_encoder)
    else:
        assert request.random_kind is not None
        kind = request.random_kind
        source = f"random-init seed {request.seed}"
        if request.image_encoder is not None:
            image_encoder = load_image_encoder(request.image_encoder)
        else:
            image_encoder = random_image_encoder(sizes.image_encoder, request.seed + 1)
        attention_from = None
        if request.attention_from is not None:
            attention_from = read_ip_adapter_file(request.attention_from)[0]["ip_adapter"]
        state_dict = random_ip_adapter_state_dict(
            kind,
            request.seed,
            [width for _, width in layers],
            cross_attention_dim,
            image_encoder.config,
            sizes,
            attention_from=attention_from,
        )
        encoder_note = "" if request.image_encoder else f", random image encoder seed {request.seed + 1}"
        shared = f", to_k_ip/to_v_ip from {request.attention_from}" if attention_from is not None else ""
        print(f"making a random {kind} IP-Adapter, seed {request.seed}{encoder_note}{shared}")
        adapter = IPAdapter(state_dict=state_dict, kind=kind, source=source, image_encoder=image_encoder)
    check_fits(adapter, layers, cross_attention_dim)
    if request.save_to is not None:
        path = save_ip_adapter(adapter, request.save_to)
        print(
            f"  saved the IP-Adapter to {path} and its image encoder to {request.save_to / SAVED_IMAGE_ENCODER_FOLDER}"
        )
    return adapter


def check_fits(adapter: IPAdapter, layers: list[tuple[str, int]], cross_attention_dim: int) -> None:
    """Raises ValueError when the adapter does not fit the UNet's cross-attentions or its image encoder."""
    if adapter.cross_attention_dim != cross_attention_dim:
        raise ValueError(
            f"the IP-Adapter makes {adapter.cross_attention_dim}-wide tokens; the UNet's cross-attention is "
            f"{cross_attention_dim} wide"
        )
    ids = _ip_attention_ids(adapter.state_dict["ip_adapter"])
    if len(ids) != len(layers):
        raise ValueError(f"the IP-Adapter has {len(ids)} attention layers; the UNet has {len(layers)} cross-attentions")
    config = adapter.image_encoder.config
    image_proj = adapter.state_dict["image_proj"]
    if adapter.kind == "regular":
        wanted, have, what = int(image_proj["proj.weight"].shape[1]), int(config.projection_dim), "projection_dim"
    else:
        wanted, have, what = int(image_proj["proj_in.weight"].shape[1]), int(config.hidden_size), "hidden_size"
    if wanted != have:
        raise ValueError(f"the IP-Adapter's projection takes {wanted} features; the image encoder's {what} is {have}")


# --- diffusers ------------------------------------------------------------------------------------------


def install_ip_adapter(unet: torch.nn.Module, adapter: IPAdapter) -> torch.nn.Module:
    """Installs the adapter with diffusers' ``_load_ip_adapter_weights``; returns its image projection.

    The projection is ``unet.encoder_hid_proj.image_projection_layers[0]`` (``ImageProjection`` or
    ``IPAdapterPlusImageProjection``), diffusers' converted module. Checks the layer order.
    """
    prepare_diffusers_import()
    unet._load_ip_adapter_weights([adapter.state_dict], low_cpu_mem_usage=False)
    check_layer_order(ip_layer_names(unet))
    if attention_id_of_unet(unet) != adapter.attention_id:
        raise RuntimeError("diffusers put the to_k_ip/to_v_ip weights into other layers than their key order says")
    projection = unet.encoder_hid_proj.image_projection_layers[0]
    projection.eval()
    projection.requires_grad_(False)
    unet.requires_grad_(False)
    return projection


def ip_processors(unet: torch.nn.Module) -> list[tuple[str, Any]]:
    """(name, processor) of diffusers' IP-Adapter attention processors, in ``attn_processors`` (scale) order."""
    prepare_diffusers_import()
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    return [
        (name[: -len(".processor")], processor)
        for name, processor in unet.attn_processors.items()
        if isinstance(processor, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0))
    ]


def ip_layer_names(unet: torch.nn.Module) -> list[str]:
    """Names of the IP-Adapter cross-attentions in scale order.

    E.g. ``down_blocks.0.attentions.0.transformer_blocks.0.attn2``, ...,
    ``mid_block.attentions.0.transformer_blocks.0.attn2``.
    """
    return [name for name, _ in ip_processors(unet)]


def check_layer_order(names: list[str]) -> None:
    """Raises RuntimeError unless the layers go down blocks, then up blocks, then the mid block.

    That is the numbering of h94's key ids and of ComfyUI_IPAdapter_plus' per-layer weights (SD 1.5:
    input 0-5, output 6-14, middle 15); within a block, by attention and transformer block index.
    """
    rank = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}

    def key(name: str) -> tuple[int, ...]:
        parts = name.split(".")
        numbers = tuple(int(part) for part in parts if part.isdigit())
        return (rank[parts[0]], *numbers)

    if any(name.split(".")[0] not in rank for name in names) or names != sorted(names, key=key):
        raise RuntimeError(f"unexpected IP-Adapter layer order: {names}")


def attention_id_of_unet(unet: torch.nn.Module) -> str:
    """The attention id of the weights installed in the UNet's IP processors, in scale order."""
    digest = hashlib.sha256()
    for _, processor in ip_processors(unet):
        if len(processor.to_k_ip) != 1:
            raise ValueError("one IP-Adapter at a time: the UNet holds several")
        digest.update(_tensor_bytes(processor.to_k_ip[0].weight))
        digest.update(_tensor_bytes(processor.to_v_ip[0].weight))
    return digest.hexdigest()


def set_ip_scales(unet: torch.nn.Module, scales: list[float]) -> None:
    """Sets diffusers' per-layer scales: ``processor.scale = [scales[l]]`` on the l-th IP processor."""
    processors = ip_processors(unet)
    if len(scales) != len(processors):
        raise ValueError(f"{len(scales)} scales for {len(processors)} IP-Adapter layers")
    for (_, processor), scale in zip(processors, scales):
        processor.scale = [float(scale)]


def make_feature_extractor(image_size: int) -> Any:
    """The transformers CLIP image processor for the encoder's size (CLIP mean/std, bicubic, resize + crop).

    The PIL backend (``CLIPImageProcessorPil``) where transformers has one: what ``CLIPImageProcessor``
    falls back to without torchvision, and the same ``preprocessor_config.json``.
    """
    try:
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:
        from transformers import CLIPImageProcessor as processor_class
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

    return processor_class(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        do_convert_rgb=True,
    )
