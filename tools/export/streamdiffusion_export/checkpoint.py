"""Reading diffusers Stable Diffusion checkpoint folders, and writing new ones (``random-init``)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .configs import ArchSpec
from .environment import prepare_diffusers_import

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object from a file, naming the file when it is missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes pretty, key-sorted JSON (diffusers' own style) with a final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def vae_kind_of(vae_dir: Path) -> str:
    """'taesd' for an AutoencoderTiny folder, 'kl' for AutoencoderKL; raises ValueError otherwise."""
    class_name = read_json(vae_dir / "config.json").get("_class_name")
    if class_name == "AutoencoderTiny":
        return "taesd"
    if class_name == "AutoencoderKL":
        return "kl"
    raise ValueError(f"{vae_dir} holds a {class_name!r}; expected AutoencoderKL or AutoencoderTiny")


@dataclass
class PipelineModules:
    """The PyTorch modules of one Stable Diffusion checkpoint, in float32 on the CPU."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    vae_kind: str
    text_encoder: torch.nn.Module
    tokenizer_dir: Path
    scheduler_config: dict[str, Any]


def load_pipeline_modules(checkpoint: Path, taesd: Path | None = None) -> PipelineModules:
    """Loads unet, VAE (or the given AutoencoderTiny folder), text encoder from a diffusers folder."""
    prepare_diffusers_import()
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextModel

    if not (checkpoint / "unet").is_dir():
        raise FileNotFoundError(f"{checkpoint} is not a diffusers Stable Diffusion folder (no unet/)")
    unet = _from_pretrained(UNet2DConditionModel, checkpoint / "unet", torch_dtype=torch.float32)
    vae_dir = taesd if taesd is not None else checkpoint / "vae"
    vae_kind = vae_kind_of(vae_dir)
    vae_class = AutoencoderTiny if vae_kind == "taesd" else AutoencoderKL
    vae = _from_pretrained(vae_class, vae_dir, torch_dtype=torch.float32)
    text_encoder = _load_text_encoder(CLIPTextModel, checkpoint / "text_encoder")
    scheduler_path = checkpoint / "scheduler" / "scheduler_config.json"
    scheduler_config = read_json(scheduler_path) if scheduler_path.exists() else {}
    for module in (unet, vae, text_encoder):
        module.eval()
        module.requires_grad_(False)
    return PipelineModules(
        unet=unet,
        vae=vae,
        vae_kind=vae_kind,
        text_encoder=text_encoder,
        tokenizer_dir=checkpoint / "tokenizer",
        scheduler_config=scheduler_config,
    )


def _from_pretrained(model_class: Any, folder: Path, **kwargs: Any) -> torch.nn.Module:
    """``from_pretrained`` that also accepts folders holding only ``*.fp16.*`` weight files."""
    try:
        return model_class.from_pretrained(str(folder), **kwargs)
    except OSError:
        if not any(".fp16." in path.name for path in folder.glob("*")):
            raise
        return model_class.from_pretrained(str(folder), variant="fp16", **kwargs)


def _load_text_encoder(model_class: Any, folder: Path) -> torch.nn.Module:
    """Loads CLIPTextModel in float32 with eager attention (plain MatMul/Softmax in ONNX)."""
    try:
        return _from_pretrained(model_class, folder, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        # transformers 4.x before 4.56 spells the dtype argument torch_dtype.
        return _from_pretrained(model_class, folder, torch_dtype=torch.float32, attn_implementation="eager")


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copies the CLIP tokenizer files (never tokenizer.json) into ``target``."""
    missing = [name for name in ("vocab.json", "merges.txt") if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer folder {source} lacks {', '.join(missing)}")
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def tokenizer_special_ids(tokenizer_dir: Path) -> dict[str, int]:
    """Vocab size and bos/eos/pad ids of a CLIP tokenizer folder, read from its JSON files."""
    vocab = read_json(tokenizer_dir / "vocab.json")
    config = (
        read_json(tokenizer_dir / "tokenizer_config.json") if (tokenizer_dir / "tokenizer_config.json").exists() else {}
    )

    def content(value: Any, default: str) -> str:
        if isinstance(value, dict):
            return str(value.get("content", default))
        return str(value) if value else default

    pad = content(config.get("pad_token"), "<|endoftext|>")
    return {
        "vocab_size": len(vocab),
        "bos_token_id": vocab[content(config.get("bos_token"), "<|startoftext|>")],
        "eos_token_id": vocab[content(config.get("eos_token"), "<|endoftext|>")],
        "pad_token_id": vocab[pad],
    }


def build_random_checkpoint(
    arch: ArchSpec, vae_kind: str, out_dir: Path, seed: int, tokenizer_dir: Path | None = None
) -> None:
    """Builds the architecture with random weights and saves it as a diffusers checkpoint folder.

    The folder has the layout ``StableDiffusionPipeline.save_pretrained`` writes (model_index.json,
    unet/, vae/, text_encoder/, tokenizer/, scheduler/), all weights in float32 safetensors.
    """
    prepare_diffusers_import()
    import diffusers
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .tokenizer_bpe import make_clip_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_out = out_dir / "tokenizer"
    if tokenizer_dir is not None:
        copy_tokenizer(tokenizer_dir, tokenizer_out)
        special = tokenizer_special_ids(tokenizer_out)
    else:
        special = make_clip_tokenizer(tokenizer_out, pad_token=arch.pad_token)

    text_config = dict(arch.text_encoder)
    if arch.text_encoder_follows_tokenizer:
        text_config.update(special)
    elif special["vocab_size"] > text_config["vocab_size"]:
        raise ValueError(
            f"tokenizer has {special['vocab_size']} tokens but the text encoder only {text_config['vocab_size']}"
        )

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(**arch.unet)
    torch.manual_seed(seed + 2)
    vae_class = AutoencoderTiny if vae_kind == "taesd" else AutoencoderKL
    vae = vae_class(**arch.vae_config(vae_kind))

    unet.save_pretrained(str(out_dir / "unet"))
    vae.save_pretrained(str(out_dir / "vae"))
    text_encoder.save_pretrained(str(out_dir / "text_encoder"))
    scheduler_class_name = arch.scheduler["_class_name"]
    scheduler_class = getattr(diffusers, scheduler_class_name)
    scheduler_args = {key: value for key, value in arch.scheduler.items() if not key.startswith("_")}
    scheduler_class.from_config(scheduler_args).save_pretrained(str(out_dir / "scheduler"))
    write_json(
        out_dir / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": diffusers.__version__,
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", scheduler_class_name],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", vae_class.__name__],
        },
    )
