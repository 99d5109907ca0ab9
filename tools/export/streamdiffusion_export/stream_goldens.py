"""``stream-goldens``: what the Python original (cumulo-autumn/StreamDiffusion) computes on a model.

Runs the original's own ``StreamDiffusion`` class (its source brought alongside, never committed:
``--streamdiffusion-src .vendor/StreamDiffusion/src``) on a diffusers checkpoint in float32 on the
CPU, over eight deterministic input frames per case, and records the denoised latents ``x̂0`` it
passes to the VAE decoder (and, for one case, the decoded image of the last frame). Each case is one stream
setting: t_index_list of length 1, 2 and 4, every cfg_type, frame_buffer_size 1 and 2, no added
noise. For f = 2 the reference is the original with its frame-buffer bugs fixed
(``fix_frame_buffer``; unpatched it mixes frames, and with n > 1 it does not run at all); the script
first proves the fixed methods equal the original for f = 1. With guidance_scale ≤ 1 and cfg_type
full or initialize the original crashes in ``prepare``; those cases run it past the crash
(``unguided``).

Frames are computed, not stored: frame k of a case (channel-major, 3 × H × W values i) is
``((7·i + 31·k) mod 256) / 127.5 − 1`` in float32, the same formula the TypeScript test uses.
The StreamDiffusion ``__call__`` is not used because it times itself with CUDA events; the script
calls the same three methods it calls (``encode_image``, ``predict_x0_batch``, ``decode_image``).

The checkpoint must hold the fixture weights: ``random-init --arch tiny-sd-turbo --vae taesd --seed 0
--save-checkpoint DIR``. The script checks its UNet against ``fixtures/goldens/tiny-sd-turbo.json.gz``
first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import TOOL_NAME, __version__
from .goldens import require_fixture_weights
from .tensor_json import dumps_json, encode_tensor, write_text_maybe_gzip

WIDTH = HEIGHT = 64
FRAMES = 8
SEED = 2
PROMPT = "a watercolor painting of a lighthouse at dawn"
NEGATIVE_PROMPT = "blurry, low quality"
GUIDANCE_SCALE = 1.5

#: name → StreamDiffusion settings. Guidance 1.5 (unless a case says otherwise) makes every cfg type
#: active (the original sets 1.0 for "none").
CASES: dict[str, dict[str, Any]] = {
    "n1-self": {"t_index_list": [32], "cfg_type": "self"},
    "n2-self": {"t_index_list": [32, 45], "cfg_type": "self"},
    "n4-self": {"t_index_list": [0, 16, 32, 45], "cfg_type": "self"},
    "n2-none": {"t_index_list": [32, 45], "cfg_type": "none"},
    "n2-initialize": {"t_index_list": [32, 45], "cfg_type": "initialize"},
    "n2-full": {"t_index_list": [32, 45], "cfg_type": "full"},
    "n4-full": {"t_index_list": [0, 16, 32, 45], "cfg_type": "full"},
    "n2-self-delta-no-noise": {"t_index_list": [20, 40], "cfg_type": "self", "delta": 0.7, "do_add_noise": False},
    "n1-f2-self": {"t_index_list": [32], "cfg_type": "self", "frame_buffer_size": 2},
    "n1-f2-full": {"t_index_list": [20], "cfg_type": "full", "frame_buffer_size": 2},
    "n2-f2-self": {"t_index_list": [32, 45], "cfg_type": "self", "frame_buffer_size": 2},
    # Without a denoising batch ("full" is left out: the original raises NameError there).
    "sequential-n2-self": {"t_index_list": [32, 45], "cfg_type": "self", "use_denoising_batch": False},
    "sequential-n3-initialize": {"t_index_list": [10, 30, 45], "cfg_type": "initialize", "use_denoising_batch": False},
    "sequential-n2-none-no-noise": {"t_index_list": [20, 40], "cfg_type": "none", "use_denoising_batch": False, "do_add_noise": False},
    "n4-f2-initialize": {"t_index_list": [0, 16, 32, 45], "cfg_type": "initialize", "frame_buffer_size": 2},
    "n2-f2-full": {"t_index_list": [32, 45], "cfg_type": "full", "frame_buffer_size": 2},
    "n2-initialize-delta": {"t_index_list": [32, 45], "cfg_type": "initialize", "delta": 0.7},
    # guidance_scale ≤ 1 turns guidance off for every cfg type: no negative batch, no stock-noise
    # guidance (the stock noise is still carried for self/initialize). 0.5, not 1: at 1 guided and
    # unguided agree up to rounding, so only a scale below 1 shows guidance was really left off.
    "n2-full-guidance-0.5": {"t_index_list": [32, 45], "cfg_type": "full", "guidance_scale": 0.5},
    "n2-self-guidance-0.5": {"t_index_list": [32, 45], "cfg_type": "self", "guidance_scale": 0.5},
}


#: txt2img cases: the original's ``txt2img`` (stream batch from noise) and ``txt2img_sd_turbo``
#: (one step), with torch's global generator seeded with SEED (they draw from it, not from the
#: stream's generator).
TXT2IMG_CASES: dict[str, dict[str, Any]] = {
    "txt2img-n2-self": {"t_index_list": [32, 45], "cfg_type": "self", "mode": "txt2img"},
    "txt2img-n1-none": {"t_index_list": [45], "cfg_type": "none", "mode": "txt2img"},
    "txt2img-sd-turbo-one-step": {"t_index_list": [0], "cfg_type": "none", "mode": "txt2img-one-step"},
}

#: The one case whose last decoded image is stored too (images are 48 KB each; latents 1 KB).
IMAGE_CASE = "n2-self"


#: How the committed goldens are made (fixtures/README.md; the checkpoint is random-init's
#: ``--save-checkpoint`` of the tiny-sd-turbo fixture).
RECORD_COMMAND = (
    "python3 -m streamdiffusion_export stream-goldens <tiny-sd-turbo checkpoint> "
    "--streamdiffusion-src .vendor/StreamDiffusion/src --out fixtures/goldens/stream-diffusion.json.gz"
)


def _source_commit(source: Path) -> str:
    """The commit of the original's source: the git checkout holding ``source`` when it is one of
    StreamDiffusion (its ``src/streamdiffusion`` beside ``.git``), else "unknown" (e.g. a copy)."""
    import subprocess

    try:
        top = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if not (Path(top) / "src" / "streamdiffusion" / "pipeline.py").is_file():
            return "unknown"  # a copy inside some other repository (ours: .vendor/ is ignored)
        return subprocess.run(
            ["git", "-C", top, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def frame_batch(first_frame: int, count: int) -> torch.Tensor:
    """``count`` frames starting at ``first_frame``, shape [count, 3, H, W], float32 in [-1, 1]."""
    size = 3 * HEIGHT * WIDTH
    index = np.arange(size, dtype=np.int64)
    frames = []
    for k in range(first_frame, first_frame + count):
        values = ((7 * index + 31 * k) % 256).astype(np.float32)
        frames.append((values / np.float32(127.5) - np.float32(1)).reshape(3, HEIGHT, WIDTH))
    return torch.from_numpy(np.stack(frames))


def fix_frame_buffer(stream: Any) -> None:
    """The original with its frame_buffer_size bugs fixed (DESIGN §4), patched onto one instance.

    The original moves state between steps by one batch entry (``[1:]``, ``[:-1]``, ``[0:1]``,
    ``[-1]``) where a step holds f entries, adds ``init_noise[0]`` to all f new frames, and leaves
    c_skip/c_out per step rather than per entry (so f > 1 with n > 1 does not even run). These
    methods are the same computations sliced by f; with f = 1 they are the original exactly
    (``record`` checks that before using them).
    """
    f = stream.frame_bff_size
    stream.c_skip = torch.repeat_interleave(stream.c_skip, f, dim=0)
    stream.c_out = torch.repeat_interleave(stream.c_out, f, dim=0)

    def encode_image(image_tensors: torch.Tensor) -> torch.Tensor:
        img_latent = stream.vae.encode(image_tensors.to(dtype=stream.vae.dtype), return_dict=False)[0]
        img_latent = getattr(img_latent, "latents", img_latent) * stream.vae.config.scaling_factor
        return stream.alpha_prod_t_sqrt[0] * img_latent + stream.beta_prod_t_sqrt[0] * stream.init_noise[0:f]

    def unet_step(x_t_latent: torch.Tensor, t_list: torch.Tensor) -> torch.Tensor:
        guided = stream.guidance_scale > 1.0
        if guided and stream.cfg_type == "initialize":
            x_plus_uc, t_list = torch.concat([x_t_latent[0:f], x_t_latent]), torch.concat([t_list[0:f], t_list])
        elif guided and stream.cfg_type == "full":
            x_plus_uc, t_list = torch.concat([x_t_latent, x_t_latent]), torch.concat([t_list, t_list])
        else:
            x_plus_uc = x_t_latent
        model_pred = stream.unet(x_plus_uc, t_list, encoder_hidden_states=stream.prompt_embeds, return_dict=False)[0]
        if guided and stream.cfg_type == "initialize":
            noise_pred_text = model_pred[f:]
            stream.stock_noise = torch.concat([model_pred[0:f], stream.stock_noise[f:]])
        elif guided and stream.cfg_type == "full":
            noise_pred_uncond, noise_pred_text = model_pred.chunk(2)
        else:
            noise_pred_text = model_pred
        if guided and stream.cfg_type in ("self", "initialize"):
            noise_pred_uncond = stream.stock_noise * stream.delta
        if guided and stream.cfg_type != "none":
            model_pred = noise_pred_uncond + stream.guidance_scale * (noise_pred_text - noise_pred_uncond)
        else:
            model_pred = noise_pred_text
        denoised = stream.scheduler_step_batch(model_pred, x_t_latent)
        if stream.cfg_type in ("self", "initialize"):
            delta_x = stream.scheduler_step_batch(model_pred, stream.beta_prod_t_sqrt * stream.stock_noise)
            ones = torch.ones_like(stream.alpha_prod_t_sqrt[0:f])
            delta_x = torch.concat([stream.alpha_prod_t_sqrt[f:], ones]) * delta_x
            delta_x = delta_x / torch.concat([stream.beta_prod_t_sqrt[f:], ones])
            stream.stock_noise = torch.concat([stream.init_noise[f:], stream.init_noise[0:f]]) + delta_x
        return denoised

    def predict_x0_batch(x_t_latent: torch.Tensor) -> torch.Tensor:
        steps = stream.denoising_steps_num
        if steps > 1:
            x_t_latent = torch.cat((x_t_latent, stream.x_t_latent_buffer))
            stream.stock_noise = torch.cat((stream.init_noise[0:f], stream.stock_noise[:-f]))
        x0 = unet_step(x_t_latent, stream.sub_timesteps_tensor)
        if steps == 1:
            return x0
        kept = stream.alpha_prod_t_sqrt[f:] * x0[:-f]
        stream.x_t_latent_buffer = kept + stream.beta_prod_t_sqrt[f:] * stream.init_noise[f:] if stream.do_add_noise else kept
        return x0[-f:]

    stream.encode_image = encode_image
    stream.predict_x0_batch = predict_x0_batch


def keep_init_noise(stream: Any) -> None:
    """Fixes the original's sequential mode (use_denoising_batch=False), which overwrites
    ``init_noise`` with each call's noised latents, so the next frame is "noised" with the previous
    frame's latents instead of the seeded noise."""
    predict = stream.predict_x0_batch

    def predict_x0_batch(x_t_latent: torch.Tensor) -> torch.Tensor:
        init_noise = stream.init_noise
        try:
            return predict(x_t_latent)
        finally:
            stream.init_noise = init_noise

    stream.predict_x0_batch = predict_x0_batch


def crashes_unguided(settings: dict[str, Any]) -> bool:
    """Whether the original crashes on these settings in ``prepare`` (see :func:`unguided`)."""
    return settings.get("guidance_scale", GUIDANCE_SCALE) <= 1 and settings["cfg_type"] in ("full", "initialize")


def unguided(stream: Any, guidance_scale: float) -> None:
    """Works around the original's crash with guidance_scale ≤ 1 and cfg_type full or initialize:
    ``prepare`` asks diffusers for no negative embeddings (guidance off) and then concatenates them
    anyway (``None.repeat``). Prepared at GUIDANCE_SCALE instead, this drops the negative
    embeddings again and sets the guidance the case asks for: what ``prepare`` means to do."""
    stream.guidance_scale = guidance_scale
    stream.prompt_embeds = stream.prompt_embeds[-stream.batch_size :]


def load_original(checkpoint: Path, streamdiffusion_src: Path, dtype: torch.dtype, device: str) -> tuple[Any, Any]:
    """The original's ``StreamDiffusion`` class (from its source folder, never installed) and a
    diffusers pipeline of ``checkpoint`` on ``device``, gradients off. Shared with ``time-original``."""
    from diffusers import StableDiffusionPipeline

    sys.path.insert(0, str(streamdiffusion_src))
    from streamdiffusion import StreamDiffusion  # the original, from its source folder

    torch.set_grad_enabled(False)
    pipe = StableDiffusionPipeline.from_pretrained(
        str(checkpoint), torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
    ).to(device)
    return StreamDiffusion, pipe


def record(
    checkpoint: Path, streamdiffusion_src: Path, fixture_goldens: Path, out: Path, source_commit: str | None = None
) -> None:
    """Runs every case and writes the goldens file (gzip-compressed when ``out`` ends in ``.gz``)."""
    StreamDiffusion, pipe = load_original(checkpoint, streamdiffusion_src, torch.float32, "cpu")
    require_fixture_weights(pipe.unet, fixture_goldens)

    def run(settings: dict[str, Any], fixed: bool) -> np.ndarray:
        f = settings.get("frame_buffer_size", 1)
        mode = settings.get("mode", "img2img")
        stream = StreamDiffusion(
            pipe,
            t_index_list=settings["t_index_list"],
            torch_dtype=torch.float32,
            width=WIDTH,
            height=HEIGHT,
            do_add_noise=settings.get("do_add_noise", True),
            use_denoising_batch=settings.get("use_denoising_batch", True),
            frame_buffer_size=f,
            cfg_type=settings["cfg_type"],
        )
        guidance_scale = settings.get("guidance_scale", GUIDANCE_SCALE)
        crashes = crashes_unguided(settings)
        stream.prepare(
            PROMPT,
            negative_prompt=NEGATIVE_PROMPT,
            num_inference_steps=50,
            guidance_scale=GUIDANCE_SCALE if crashes else guidance_scale,
            delta=settings.get("delta", 1.0),
            generator=torch.Generator(),
            seed=SEED,
        )
        if crashes:
            unguided(stream, guidance_scale)
        if fixed:
            fix_frame_buffer(stream)
        sequential = not settings.get("use_denoising_batch", True)
        if sequential:
            keep_init_noise(stream)
            torch.manual_seed(SEED)  # its torch.randn_like between steps draws from the global generator
        latents = []
        if mode == "img2img":
            for call in range(FRAMES):
                x0 = stream.predict_x0_batch(stream.encode_image(frame_batch(call * f, f)))
                latents.append(x0.numpy().copy())
            last_images[0] = stream.decode_image(x0).numpy()
            return np.stack(latents)
        # txt2img: the original decodes inside; record what it decodes.
        decoded_inputs: list[np.ndarray] = []
        decode = stream.decode_image
        stream.decode_image = lambda x0: (decoded_inputs.append(x0.numpy().copy()), decode(x0))[1]
        torch.manual_seed(SEED)
        for _ in range(FRAMES):
            last_images[0] = (stream.txt2img() if mode == "txt2img" else stream.txt2img_sd_turbo()).numpy()
        return np.stack(decoded_inputs)

    last_images: list[np.ndarray] = [np.zeros(0)]
    # The fixed methods must be the original itself when f = 1.
    for name in ("n2-self", "n4-full", "n2-initialize", "n2-self-delta-no-noise"):
        if not np.array_equal(run(CASES[name], fixed=False), run(CASES[name], fixed=True)):
            raise SystemExit(f"the frame-buffer fix changes {name} (f = 1): it must not")
    print("frame-buffer fix: identical to the original for f = 1")

    cases: dict[str, Any] = {}
    for name, settings in {**CASES, **TXT2IMG_CASES}.items():
        f = settings.get("frame_buffer_size", 1)
        fixed = f > 1
        latents = run(settings, fixed)
        sequential = not settings.get("use_denoising_batch", True)
        image = last_images[0]
        cases[name] = {
            "settings": {"guidance_scale": GUIDANCE_SCALE, **settings, "frame_buffer_size": f, "seed": SEED},
            "reference": "original with its frame_buffer_size bugs fixed (fix_frame_buffer)"
            if fixed
            else "original, keeping its seeded init_noise (keep_init_noise)"
            if sequential
            else "original, past its guidance ≤ 1 crash (unguided)"
            if crashes_unguided(settings)
            else "original",
            "latents": encode_tensor(latents),
        }
        if name == IMAGE_CASE:
            cases[name]["last_image"] = encode_tensor(image.astype(np.float32))
        print(f"{name}: {FRAMES} calls, x0 |max| {float(np.abs(latents).max()):.3f}{' (bugs fixed)' if fixed else ''}")

    written = write_text_maybe_gzip(
        out,
        dumps_json(
            {
                "tool": f"{TOOL_NAME} {__version__}",
                "command": RECORD_COMMAND,
                "streamdiffusion_commit": source_commit or _source_commit(streamdiffusion_src),
                "torch": torch.__version__,
                "reference": "cumulo-autumn/StreamDiffusion StreamDiffusion class, float32, CPU",
                "prompt": PROMPT,
                "negative_prompt": NEGATIVE_PROMPT,
                "width": WIDTH,
                "height": HEIGHT,
                "frames": FRAMES,
                "frame_formula": "((7*i + 31*k) % 256) / 127.5 - 1, float32, i over 3*H*W, k = frame number",
                "cases": cases,
            }
        ),
    )
    print(f"wrote {out} ({written} bytes)")
