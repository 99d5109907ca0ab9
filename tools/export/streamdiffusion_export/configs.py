"""Architectures the tool can build from scratch (``random-init``), as plain config dictionaries.

The full-size configs restate the public diffusers/transformers configs of the checkpoints we
target (values only, no weights):

* ``sd15``: Stable Diffusion 1.5 (CLIP ViT-L/14 text encoder, 768 wide, quick_gelu).
* ``sd-turbo``: SD-Turbo, which is the Stable Diffusion 2.1 architecture (OpenCLIP ViT-H text
  encoder as a 23-layer CLIPTextModel, 1024 wide, gelu; linear projections in the transformers;
  attention heads per block [5, 10, 20, 20]).

The ``tiny-*`` variants keep the block structure that the runtime and the ControlNet layout rely
on (4 down blocks: 3 CrossAttnDownBlock2D + DownBlock2D, 2 layers per block, so 12 down residuals
plus the mid residual; a VAE with a latent factor of 8) with tiny widths, so the exported ONNX
files are a few hundred kilobytes. ``micro-sd-turbo`` is tiny-sd-turbo with half its UNet widths (4/4/8/8:
46k weights instead of 630k), so that a UNet with ControlNet inputs and two ControlNets fit the
fixture budget next to the tiny text encoder and TAESD it shares with tiny-sd-turbo.

Every architecture also names the ``conditioning_embedding_out_channels`` of its ControlNets
(``controlnet --random-init``); the rest of a ControlNet config follows from the UNet config, as in
diffusers' ``ControlNetModel.from_unet`` (:func:`controlnet_config`).

And the sizes of its random IP-Adapters (``--ip-adapter-random``, :class:`IPAdapterSizes`): the
full-size archs get the image encoder every h94/IP-Adapter SD 1.5 adapter uses (OpenCLIP ViT-H/14 as
a transformers ``CLIPVisionModelWithProjection``) and a Resampler of IP-Adapter Plus' size; the
tiny archs a 32-wide, 2-layer encoder on 32x32 images and an 8-wide Resampler (one head of 64).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

ARCH_NAMES = ("sd15", "sd-turbo", "tiny-sd15", "tiny-sd-turbo", "micro-sd-turbo")
VAE_KINDS = ("kl", "taesd")

_DOWN_BLOCKS = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_UP_BLOCKS = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

#: Scaling factor of the SD 1.x/2.x KL VAE; AutoencoderTiny (TAESD) uses 1.0.
KL_SCALING_FACTOR = 0.18215

#: Token sequence length of every CLIP text encoder in SD 1.x/2.x.
MAX_TOKEN_LENGTH = 77

SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": _DOWN_BLOCKS,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": _UP_BLOCKS,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "use_linear_projection": False,
    "upcast_attention": False,
}

SD_TURBO_UNET: dict[str, Any] = {
    **SD15_UNET,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
}

SD_KL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": KL_SCALING_FACTOR,
}

#: diffusers' default AutoencoderTiny config, which is TAESD for SD 1.x/2.x (madebyollin/taesd).
TAESD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "encoder_block_out_channels": [64, 64, 64, 64],
    "decoder_block_out_channels": [64, 64, 64, 64],
    "act_fn": "relu",
    "latent_channels": 4,
    "upsampling_scaling_factor": 2,
    "num_encoder_blocks": [1, 3, 3, 3],
    "num_decoder_blocks": [3, 3, 3, 1],
    "latent_magnitude": 3,
    "latent_shift": 0.5,
    "force_upcast": False,
    "scaling_factor": 1.0,
}

SD15_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": MAX_TOKEN_LENGTH,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

SD_TURBO_TEXT: dict[str, Any] = {
    **SD15_TEXT,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
    "projection_dim": 512,
}

TINY_UNET_SD15: dict[str, Any] = {
    **SD15_UNET,
    "sample_size": 8,
    "block_out_channels": [16, 16, 32, 32],
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 2,
}

TINY_UNET_SD_TURBO: dict[str, Any] = {
    **SD_TURBO_UNET,
    "sample_size": 8,
    "block_out_channels": [16, 16, 32, 32],
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": [1, 2, 4, 4],
}

#: tiny-sd-turbo at half the UNet widths: 4/4/8/8 channels (2 groups), 1/1/2/2 heads (head width 4),
#: 46k weights; the same blocks, so still 12 down residuals plus the mid residual.
MICRO_UNET_SD_TURBO: dict[str, Any] = {
    **TINY_UNET_SD_TURBO,
    "block_out_channels": [4, 4, 8, 8],
    "norm_num_groups": 2,
    "attention_head_dim": [1, 1, 2, 2],
}

#: ControlNet conditioning embedding channels (``conditioning_embedding_out_channels``): diffusers'
#: default, which every SD 1.5 / 2.1 ControlNet uses, and the small ones of the test archs. Three
#: stride-2 convolutions take the control image (8x the latent size) down to the latent size.
CONTROLNET_EMBEDDING_CHANNELS = (16, 32, 96, 256)
TINY_CONTROLNET_EMBEDDING_CHANNELS = (8, 8, 16, 16)
MICRO_CONTROLNET_EMBEDDING_CHANNELS = (4, 4, 8, 8)

TINY_KL_VAE: dict[str, Any] = {
    **SD_KL_VAE,
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
}

TINY_TAESD_VAE: dict[str, Any] = {
    **TAESD_VAE,
    "encoder_block_out_channels": [16, 16, 16, 16],
    "decoder_block_out_channels": [16, 16, 16, 16],
    "num_encoder_blocks": [1, 1, 1, 1],
    "num_decoder_blocks": [1, 1, 1, 1],
}

TINY_TEXT_SD15: dict[str, Any] = {
    **SD15_TEXT,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "projection_dim": 32,
}

TINY_TEXT_SD_TURBO: dict[str, Any] = {**TINY_TEXT_SD15, "hidden_act": "gelu"}

#: The IP-Adapter image encoder (h94/IP-Adapter ``models/image_encoder``): OpenCLIP ViT-H/14 as a
#: transformers ``CLIPVisionConfig`` (224x224 images, 257 tokens of 1280, projection to 1024).
VIT_H_IMAGE_ENCODER: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}

#: A tiny image encoder for the tiny archs: 32x32 images, 8x8 patches (17 tokens of 32), 2 layers.
TINY_IMAGE_ENCODER: dict[str, Any] = {
    **VIT_H_IMAGE_ENCODER,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 32,
}


@dataclass(frozen=True)
class IPAdapterSizes:
    """Sizes of the random IP-Adapters of an arch (``--ip-adapter-random``).

    The cross-attention width and the per-layer widths of ``to_k_ip``/``to_v_ip`` follow from the
    UNet; these are the rest. ``plus_hidden_dims`` is the Resampler's width (``latents`` [1, 16,
    hidden]) and ``plus_heads`` its heads of 64 (diffusers' converter fixes ``dim_head`` = 64 and reads
    the heads from ``to_q``: out features = 64 x heads).
    """

    image_encoder: dict[str, Any]
    plus_hidden_dims: int
    plus_heads: int


#: IP-Adapter Plus SD 1.5 (h94/IP-Adapter ``ip-adapter-plus_sd15``): a Resampler 768 wide, 12 heads.
FULL_IP_ADAPTER = IPAdapterSizes(image_encoder=VIT_H_IMAGE_ENCODER, plus_hidden_dims=768, plus_heads=12)
TINY_IP_ADAPTER = IPAdapterSizes(image_encoder=TINY_IMAGE_ENCODER, plus_hidden_dims=8, plus_heads=1)

#: Scheduler shipped with SD 1.5 checkpoints.
SD15_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}

#: Scheduler shipped with SD-Turbo checkpoints.
SD_TURBO_SCHEDULER: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}

#: Settings of the LCMScheduler config written into every model folder, on top of the noise
#: schedule (betas, prediction type) taken from the source checkpoint.
LCM_SCHEDULER_SETTINGS: dict[str, Any] = {
    "original_inference_steps": 50,
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": True,
    "timestep_scaling": 10.0,
}

#: Keys of a source scheduler config that describe the noise schedule and are kept.
NOISE_SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
)


@dataclass(frozen=True)
class ArchSpec:
    """Everything ``random-init`` needs to build one architecture."""

    name: str
    unet: dict[str, Any]
    text_encoder: dict[str, Any]
    kl_vae: dict[str, Any]
    taesd_vae: dict[str, Any]
    scheduler: dict[str, Any]
    #: Padding token of the tokenizer: SD 1.5 pads with <|endoftext|>, SD 2.1 with "!".
    pad_token: str
    #: Whether the text encoder's vocab size and special token ids follow the tool-made tokenizer.
    text_encoder_follows_tokenizer: bool
    #: ``conditioning_embedding_out_channels`` of this arch's ControlNets (``controlnet --random-init``).
    controlnet_embedding_channels: tuple[int, ...] = CONTROLNET_EMBEDDING_CHANNELS
    #: Sizes of this arch's random IP-Adapters and their image encoder (``--ip-adapter-random``).
    ip_adapter: IPAdapterSizes = FULL_IP_ADAPTER
    extra: dict[str, Any] = field(default_factory=dict)

    def vae_config(self, vae: str) -> dict[str, Any]:
        """Config of the VAE of the given kind ('kl' or 'taesd'), as a fresh copy."""
        if vae not in VAE_KINDS:
            raise ValueError(f"vae must be one of {VAE_KINDS}, got {vae!r}")
        return copy.deepcopy(self.kl_vae if vae == "kl" else self.taesd_vae)


ARCHS: dict[str, ArchSpec] = {
    "sd15": ArchSpec(
        name="sd15",
        unet=SD15_UNET,
        text_encoder=SD15_TEXT,
        kl_vae=SD_KL_VAE,
        taesd_vae=TAESD_VAE,
        scheduler=SD15_SCHEDULER,
        pad_token="<|endoftext|>",
        text_encoder_follows_tokenizer=False,
    ),
    "sd-turbo": ArchSpec(
        name="sd-turbo",
        unet=SD_TURBO_UNET,
        text_encoder=SD_TURBO_TEXT,
        kl_vae={**SD_KL_VAE, "sample_size": 768},
        taesd_vae=TAESD_VAE,
        scheduler=SD_TURBO_SCHEDULER,
        pad_token="!",
        text_encoder_follows_tokenizer=False,
    ),
    "tiny-sd15": ArchSpec(
        name="tiny-sd15",
        unet=TINY_UNET_SD15,
        text_encoder=TINY_TEXT_SD15,
        kl_vae=TINY_KL_VAE,
        taesd_vae=TINY_TAESD_VAE,
        scheduler=SD15_SCHEDULER,
        pad_token="<|endoftext|>",
        text_encoder_follows_tokenizer=True,
        controlnet_embedding_channels=TINY_CONTROLNET_EMBEDDING_CHANNELS,
        ip_adapter=TINY_IP_ADAPTER,
    ),
    "tiny-sd-turbo": ArchSpec(
        name="tiny-sd-turbo",
        unet=TINY_UNET_SD_TURBO,
        text_encoder=TINY_TEXT_SD_TURBO,
        kl_vae=TINY_KL_VAE,
        taesd_vae=TINY_TAESD_VAE,
        scheduler=SD_TURBO_SCHEDULER,
        pad_token="!",
        text_encoder_follows_tokenizer=True,
        controlnet_embedding_channels=TINY_CONTROLNET_EMBEDDING_CHANNELS,
        ip_adapter=TINY_IP_ADAPTER,
    ),
}


# The tiny SD-Turbo with a smaller UNet and ControlNet embedding: ControlNet fixtures fit the size budget.
ARCHS["micro-sd-turbo"] = dataclasses.replace(
    ARCHS["tiny-sd-turbo"],
    name="micro-sd-turbo",
    unet=MICRO_UNET_SD_TURBO,
    controlnet_embedding_channels=MICRO_CONTROLNET_EMBEDDING_CHANNELS,
)


def ip_adapter_sizes(arch_name: str | None) -> IPAdapterSizes:
    """Random IP-Adapter sizes for an arch name; names outside ``ARCH_NAMES`` (detected ones) get full sizes."""
    return ARCHS[arch_name].ip_adapter if arch_name in ARCHS else FULL_IP_ADAPTER


def get_arch(name: str) -> ArchSpec:
    """Looks up an architecture by name; raises ValueError naming the known ones."""
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; expected one of {', '.join(ARCH_NAMES)}") from None


_ARCH_SIGNATURE_KEYS = (
    "block_out_channels",
    "cross_attention_dim",
    "attention_head_dim",
    "use_linear_projection",
    "layers_per_block",
)


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def detect_arch(unet_config: dict[str, Any]) -> str:
    """Names the architecture of a UNet config.

    Returns one of ``ARCH_NAMES`` when the UNet matches it, else ``sd15-like`` (768-wide text
    conditioning), ``sd21-like`` (1024) or ``custom``.
    """
    for name, spec in ARCHS.items():
        if all(_normalise(unet_config.get(key)) == _normalise(spec.unet.get(key)) for key in _ARCH_SIGNATURE_KEYS):
            return name
    width = unet_config.get("cross_attention_dim")
    if width == 768:
        return "sd15-like"
    if width == 1024:
        return "sd21-like"
    return "custom"


#: UNet config keys that diffusers' ``ControlNetModel.from_unet`` copies into the ControlNet config.
CONTROLNET_KEYS_FROM_UNET = (
    "in_channels",
    "flip_sin_to_cos",
    "freq_shift",
    "down_block_types",
    "only_cross_attention",
    "block_out_channels",
    "layers_per_block",
    "downsample_padding",
    "mid_block_scale_factor",
    "act_fn",
    "norm_num_groups",
    "norm_eps",
    "cross_attention_dim",
    "attention_head_dim",
    "num_attention_heads",
    "use_linear_projection",
    "class_embed_type",
    "num_class_embeds",
    "upcast_attention",
    "resnet_time_scale_shift",
    "projection_class_embeddings_input_dim",
    "mid_block_type",
    "transformer_layers_per_block",
    "encoder_hid_dim",
    "encoder_hid_dim_type",
    "addition_embed_type",
    "addition_time_embed_dim",
)


def controlnet_config(
    unet_config: dict[str, Any], conditioning_channels: int, embedding_channels: tuple[int, ...]
) -> dict[str, Any]:
    """``ControlNetModel`` arguments for a UNet config, as ``ControlNetModel.from_unet`` would pass them.

    Keys the UNet config leaves out keep ControlNetModel's defaults, which equal UNet2DConditionModel's.
    """
    if conditioning_channels < 1:
        raise ValueError(f"conditioning_channels must be at least 1, got {conditioning_channels}")
    config = {key: copy.deepcopy(unet_config[key]) for key in CONTROLNET_KEYS_FROM_UNET if key in unet_config}
    config["controlnet_conditioning_channel_order"] = "rgb"
    config["conditioning_embedding_out_channels"] = list(embedding_channels)
    config["conditioning_channels"] = conditioning_channels
    return config
