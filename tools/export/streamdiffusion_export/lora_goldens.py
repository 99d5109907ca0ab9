"""LoRA fixtures and goldens for the LoRA merge of ``@streamdiffusion/tensorrt``.

Writes two small random LoRAs for the tiny-sd-turbo fixture, in the two naming families users'
files come in, and what diffusers makes of them:

- ``kohya.safetensors``: sd-scripts names (``lora_unet_…``, ``lora_te_…``, ``.lora_down/.lora_up/.alpha``)
  on UNet attention projections of three blocks, one 3×3 resnet conv (LoCon) and the text encoder's
  first layer.
- ``peft.safetensors``: diffusers/PEFT names (``unet.….lora_A.weight``, ``text_encoder.text_model.….lora_B.weight``)
  without alphas (so α = rank), on other layers and one shared with the kohya file.

For each case (no LoRA; kohya at 1; kohya at 0.5 with PEFT at 1; PEFT at -1) the goldens hold the
UNet's output and the first tokens of the text encoder's last hidden state, with the LoRAs fused
into the PyTorch weights. The file names are read by diffusers' own code
(``StableDiffusionLoraLoaderMixin.lora_state_dict``: kohya → diffusers conversion, alphas) and
turned into PEFT names by diffusers' ``convert_unet_state_dict_to_peft`` / ``convert_state_dict_to_peft``;
the fuse is PEFT's merge, W + scale · (α / r) · B·A (written out here: PEFT is not installed where
this runs). The checkpoint must hold the fixture's weights (``random-init --arch tiny-sd-turbo --vae
taesd --seed 0 --save-checkpoint DIR``); this is checked against ``fixtures/goldens/tiny-sd-turbo.json.gz``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_pipeline_modules
from .goldens import require_fixture_weights
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

#: Text-encoder positions kept in the goldens (the prompt's tokens and a few pads).
TEXT_TOKENS = 8
#: The LoRA layers: (component, module path, rank).
KOHYA_LAYERS = [
    *[
        ("unet", f"{block}.attentions.0.transformer_blocks.0.{attn}.{proj}", 2)
        for block in ("down_blocks.0", "mid_block", "up_blocks.1")
        for attn in ("attn1", "attn2")
        for proj in ("to_q", "to_k", "to_v", "to_out.0")
    ],
    ("unet", "down_blocks.1.resnets.0.conv1", 2),
    ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", 2),
    ("text_encoder", "text_model.encoder.layers.0.self_attn.v_proj", 2),
    ("text_encoder", "text_model.encoder.layers.0.mlp.fc1", 2),
]
PEFT_LAYERS = [
    ("unet", "up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k", 2),
    ("unet", "up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v", 2),
    ("unet", "up_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj", 2),
    ("unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_q", 2),
    ("text_encoder", "text_model.encoder.layers.1.self_attn.k_proj", 2),
]
CASES = [("none", []), ("kohya", [("kohya", 1.0)]), ("kohya-half+peft", [("kohya", 0.5), ("peft", 1.0)]), ("peft-negative", [("peft", -1.0)])]


def _module(modules: Any, component: str, path: str) -> torch.nn.Module:
    root = modules.unet if component == "unet" else modules.text_encoder
    try:
        return root.get_submodule(path)
    except AttributeError:
        # transformers 5's CLIPTextModel holds the encoder itself (no `text_model.`), as our ONNX
        # text encoders are named; LoRA files keep the older `text_model.` paths.
        return root.get_submodule(path.removeprefix("text_model."))


def _random_pair(module: torch.nn.Module, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """down [r, in(, kh, kw)] and up [out, r(, 1, 1)], large enough to change the outputs visibly."""
    weight = module.weight
    if weight.ndim == 4:
        down = torch.randn((rank, weight.shape[1], weight.shape[2], weight.shape[3]), generator=generator) * 0.3
        up = torch.randn((weight.shape[0], rank, 1, 1), generator=generator) * 0.3
    else:
        down = torch.randn((rank, weight.shape[1]), generator=generator) * 0.3
        up = torch.randn((weight.shape[0], rank), generator=generator) * 0.3
    # fp16 in the file; the goldens use exactly these values.
    return down.half(), up.half()


def make_loras(modules: Any, out_dir: Path, seed: int) -> dict[str, Path]:
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    kohya: dict[str, torch.Tensor] = {}
    for component, path, rank in KOHYA_LAYERS:
        down, up = _random_pair(_module(modules, component, path), rank, generator)
        name = ("lora_unet_" if component == "unet" else "lora_te_") + path.replace(".", "_")
        kohya[f"{name}.lora_down.weight"] = down
        kohya[f"{name}.lora_up.weight"] = up
        kohya[f"{name}.alpha"] = torch.tensor(float(rank) / 2).half()  # α = r/2: a scale of 0.5
    peft: dict[str, torch.Tensor] = {}
    for component, path, rank in PEFT_LAYERS:
        down, up = _random_pair(_module(modules, component, path), rank, generator)
        peft[f"{component}.{path}.lora_A.weight"] = down
        peft[f"{component}.{path}.lora_B.weight"] = up
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"kohya": out_dir / "kohya.safetensors", "peft": out_dir / "peft.safetensors"}
    save_file(kohya, str(files["kohya"]), metadata={"ss_network_module": "networks.lora", "made_by": "streamdiffusion_export lora-goldens"})
    save_file(peft, str(files["peft"]), metadata={"made_by": "streamdiffusion_export lora-goldens"})
    return files


#: diffusers' names for a layer's LoRA pair (what ``lora_state_dict`` gives: its kohya conversion
#: writes the older forms) → the layer's own path.
_DIFFUSERS_PAIRS = [
    (re.compile(r"^(.*)\.processor\.to_(q|k|v)_lora\.(down|up)\.weight$"), lambda m: f"{m[1]}.to_{m[2]}"),
    (re.compile(r"^(.*)\.processor\.to_out_lora\.(down|up)\.weight$"), lambda m: f"{m[1]}.to_out.0"),
    (re.compile(r"^(.*\.self_attn)\.to_(q|k|v)_lora\.(down|up)\.weight$"), lambda m: f"{m[1]}.{m[2]}_proj"),
    (re.compile(r"^(.*\.self_attn)\.to_out_lora\.(down|up)\.weight$"), lambda m: f"{m[1]}.out_proj"),
    (re.compile(r"^(.*)\.lora_linear_layer\.(down|up)\.weight$"), lambda m: m[1]),
    (re.compile(r"^(.*)\.lora\.(down|up)\.weight$"), lambda m: m[1]),
    (re.compile(r"^(.*)\.lora_(A|B)\.weight$"), lambda m: m[1]),
]


def random_lora(checkpoint: Path, out: Path, rank: int, seed: int) -> int:
    """A random kohya-named LoRA on every attention projection of the UNet (to_q, to_k, to_v, to_out.0)
    and the text encoder (q, k, v, out_proj), the layers real SD LoRAs train, at ``rank``: for timing
    hot LoRA on full-size models (no goldens). Returns the number of layers."""
    from safetensors.torch import save_file

    modules = load_pipeline_modules(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    targets = [("unet", name) for name, _ in modules.unet.named_modules() if re.search(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$", name)]
    targets += [("text_encoder", name) for name, _ in modules.text_encoder.named_modules() if re.search(r"self_attn\.(q_proj|k_proj|v_proj|out_proj)$", name)]
    for component, path in targets:
        down, up = _random_pair(_module(modules, component, path), rank, generator)
        layer = path if component == "unet" or path.startswith("text_model.") else f"text_model.{path}"
        name = ("lora_unet_" if component == "unet" else "lora_te_") + layer.replace(".", "_")
        tensors[f"{name}.lora_down.weight"] = down * 0.1
        tensors[f"{name}.lora_up.weight"] = up * 0.1
        tensors[f"{name}.alpha"] = torch.tensor(float(rank)).half()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"made_by": "streamdiffusion_export random-lora"})
    return len(targets)


def read_as_diffusers(file: Path) -> list[tuple[str, str, torch.Tensor, torch.Tensor, float]]:
    """(component, layer path, down [r, …], up […, r], α) per layer, from the state dict and alphas
    diffusers' ``StableDiffusionLoraLoaderMixin.lora_state_dict`` makes of the file (its own kohya
    conversion and alpha names); α defaults to the rank, as PEFT does without one."""
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin

    state_dict, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(str(file))
    alphas = alphas or {}
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        for pattern, layer_of in _DIFFUSERS_PAIRS:
            match = pattern.match(key)
            if match is None:
                continue
            role = "down" if key.endswith(("down.weight", "lora_A.weight")) else "up"
            entry = pairs.setdefault(layer_of(match), {})
            entry[role] = tensor.float()
            if role == "down":
                entry["alpha"] = alphas.get(f"{key}.alpha", alphas.get(f"{key.rsplit('.lora', 1)[0]}.alpha"))
            break
        else:
            raise SystemExit(f"{file}: diffusers gave a key this script does not read: {key}")
    layers = []
    for path, entry in sorted(pairs.items()):
        component, _, layer = path.partition(".")
        rank = entry["down"].shape[0]
        alpha = entry.get("alpha")
        layers.append((component, layer, entry["down"], entry["up"], float(rank if alpha is None else alpha)))
    return layers


def fuse(modules: Any, layers: list[tuple[str, str, torch.Tensor, torch.Tensor, float]], scale: float) -> None:
    """PEFT's merge: W += scale · (α / r) · (B·A), reshaped to W (conv LoRAs: B [o, r, 1, 1], A [r, i, kh, kw])."""
    for component, path, down, up, alpha in layers:
        module = _module(modules, component, path)
        rank = down.shape[0]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(module.weight.shape)
        module.weight.data += scale * (alpha / rank) * delta


def record(checkpoint: Path, fixture_goldens: Path, out_dir: Path, golden_out: Path, seed: int) -> None:
    modules = load_pipeline_modules(checkpoint)
    torch.set_grad_enabled(False)
    unet_inputs = require_fixture_weights(modules.unet, fixture_goldens)
    files = make_loras(modules, out_dir, seed)
    read = {name: read_as_diffusers(path) for name, path in files.items()}
    for name, layers in read.items():
        print(f"{name}: diffusers reads {len(layers)} layers ({sum(1 for layer in layers if layer[0] == 'unet')} UNet)")
    # bos, five words, eos, then eos as padding (the tiny vocabulary: bos 992, eos 993).
    input_ids = torch.tensor([[992, 320, 125, 530, 320, 375, 993] + [993] * 70], dtype=torch.int64)
    originals = {id(parameter): parameter.data.clone() for root in (modules.unet, modules.text_encoder) for parameter in root.parameters()}
    cases = []
    for case, loras in CASES:
        for root in (modules.unet, modules.text_encoder):
            for parameter in root.parameters():
                parameter.data.copy_(originals[id(parameter)])
        for name, scale in loras:
            fuse(modules, read[name], scale)
        unet_out = modules.unet(unet_inputs["sample"], unet_inputs["timestep"], unet_inputs["encoder_hidden_states"], return_dict=False)[0]
        text_out = modules.text_encoder(input_ids).last_hidden_state[:, :TEXT_TOKENS]
        cases.append({"name": case, "loras": [{"file": f"{name}.safetensors", "scale": scale} for name, scale in loras], "unet": encode_tensor(unet_out.numpy()), "text_encoder": encode_tensor(text_out.numpy())})
        print(f"{case}: |unet| {float(unet_out.abs().max()):.3g}")
    golden = {
        "tool": "streamdiffusion_export lora-goldens",
        "torch": torch.__version__,
        "text_tokens": TEXT_TOKENS,
        # The UNet's inputs are the fixture goldens' (fixtures/goldens/tiny-sd-turbo.json.gz, models.unet.inputs).
        "inputs": {"unet": "tiny-sd-turbo.json#models.unet.inputs", "input_ids": encode_tensor(input_ids.numpy())},
        "cases": cases,
    }
    written = write_text_maybe_gzip(golden_out, dumps_json(golden))
    print(f"wrote {golden_out} ({written} bytes), {files['kohya'].stat().st_size + files['peft'].stat().st_size} bytes of LoRA files")
