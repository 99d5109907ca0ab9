"""Command line: ``python3 -m streamdiffusion_export <command> ...`` (see tools/export/README.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from . import TOOL_NAME, __version__
from .configs import ARCH_NAMES, VAE_KINDS
from .environment import describe_versions, prepare_diffusers_import, stubbed_modules


def _quiet_libraries() -> None:
    """Keeps the logs to what this tool says: no tracer warnings, progress bars or info chatter."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    prepare_diffusers_import()
    import torch

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded.*")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    import diffusers

    diffusers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    if stubbed_modules():
        print(f"note: {', '.join(stubbed_modules())} not installed; stand-ins registered for diffusers' imports")


def _add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("shapes (dynamic unless --static)")
    group.add_argument("--static", action="store_true", help="fix every shape instead of dynamic batch/height/width")
    group.add_argument("--batch", type=int, default=2, help="UNet batch (static) or tracing batch (default 2)")
    group.add_argument("--height", type=int, default=None, help="image height in pixels, a multiple of 64")
    group.add_argument("--width", type=int, default=None, help="image width in pixels, a multiple of 64")
    group.add_argument("--vae-batch", type=int, default=1, help="VAE encoder/decoder batch (default 1)")
    group.add_argument("--text-batch", type=int, default=1, help="text encoder batch (default 1)")
    group.add_argument(
        "--image-batch", type=int, default=1, help="IP-Adapter image encoder and image projection batch (default 1)"
    )


def _add_original_source_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--streamdiffusion-src", default=".vendor/StreamDiffusion/src", help="folder holding the original's streamdiffusion package"
    )


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32", help="weights and float I/O dtype")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--exporter",
        choices=("auto", "torchscript", "dynamo"),
        default="auto",
        help="torch.onnx exporter; auto = TorchScript (dynamo=False), falling back to dynamo=True",
    )
    parser.add_argument(
        "--attention",
        choices=("plain", "fused"),
        default="plain",
        help="UNet attention as standard ONNX ops (plain: runs everywhere) or onnxruntime MultiHeadAttention "
        "nodes (fused: much faster on WebGPU/CUDA; on the CPU fp32 only); needs the TorchScript exporter",
    )
    parser.add_argument(
        "--short-names",
        action="store_true",
        help="short node and intermediate tensor names (inputs, outputs and weights keep theirs): "
        "about half the size of a tiny model; for fixtures",
    )
    _add_compact_graph_argument(parser)
    _add_shape_arguments(parser)


def _add_compact_graph_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compact-graph",
        action="store_true",
        help="implies --short-names; also short weight names (w0, ...), unnamed nodes, no Identity nodes that "
        "only forward a weight, no value_info: ~17%% less for a micro UNet; for fixtures",
    )


def _add_controlnet_inputs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--controlnet-inputs",
        action="store_true",
        help="export the UNet with ControlNet residual inputs (down_block_residual_0..11, mid_block_residual)",
    )


def _add_ip_adapter_source_arguments(group: argparse._ArgumentGroup) -> None:
    """Where an IP-Adapter comes from: a file or a seeded random one (convert, random-init, ip-adapter-image)."""
    group.add_argument(
        "--ip-adapter",
        metavar="FILE",
        help="h94-format IP-Adapter (.bin/.safetensors, e.g. ip-adapter_sd15.safetensors, ip-adapter-plus_sd15.bin) "
        "or a --save-ip-adapter folder",
    )
    group.add_argument(
        "--ip-adapter-random", choices=("regular", "plus"), help="a random IP-Adapter of this kind (seeded) instead"
    )
    group.add_argument(
        "--ip-adapter-seed", type=int, default=0, help="random IP-Adapter seed; its random image encoder uses seed + 1"
    )
    group.add_argument(
        "--image-encoder",
        metavar="DIR",
        help="transformers CLIPVisionModelWithProjection folder (needed with --ip-adapter FILE unless it is a "
        "--save-ip-adapter folder; with --ip-adapter-random it replaces the random encoder)",
    )
    group.add_argument(
        "--ip-adapter-attention-from",
        metavar="FILE",
        help="with --ip-adapter-random: copy to_k_ip/to_v_ip from this adapter (same attention id, so its UNet "
        "takes this adapter's tokens)",
    )
    group.add_argument(
        "--save-ip-adapter",
        metavar="DIR",
        help="keep the adapter as DIR/ip-adapter.safetensors and its image encoder as DIR/image_encoder/",
    )


def _add_ip_adapter_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "IP-Adapter (the UNet gets ip_adapter_scale; image_encoder/, feature_extractor/, image_projection/ are added)"
    )
    _add_ip_adapter_source_arguments(group)


def _ip_adapter_request(args: argparse.Namespace):
    """The IP-Adapter options as an ``IPAdapterRequest``, or None when none is asked for."""
    from .ip_adapter import IPAdapterRequest

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    if args.ip_adapter is None and args.ip_adapter_random is None:
        extra = [
            name
            for name in ("image_encoder", "ip_adapter_attention_from", "save_ip_adapter")
            if getattr(args, name) is not None
        ]
        if extra:
            options = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise ValueError(f"{options} need --ip-adapter or --ip-adapter-random")
        return None
    request = IPAdapterRequest(
        file=path(args.ip_adapter),
        random_kind=args.ip_adapter_random,
        seed=args.ip_adapter_seed,
        image_encoder=path(args.image_encoder),
        attention_from=path(args.ip_adapter_attention_from),
        save_to=path(args.save_ip_adapter),
    )
    request.validate()
    return request


def _shapes(args: argparse.Namespace):
    from .export_onnx import ExportShapes

    if args.static and (args.height is None or args.width is None):
        raise SystemExit("--static needs --height and --width (pixels)")
    return ExportShapes(
        static=args.static,
        batch=args.batch,
        height=args.height or 128,
        width=args.width or 128,
        vae_batch=args.vae_batch,
        text_batch=args.text_batch,
        image_batch=args.image_batch,
    )


def _export_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The export options every export command shares (_add_export_arguments and shapes)."""
    return {
        "dtype": args.dtype,
        "shapes": _shapes(args),
        "device": args.device,
        "exporter": args.exporter,
        "attention": args.attention,
        "short_names": args.short_names or args.compact_graph,
        "compact_graph": args.compact_graph,
    }


def _print_results(results, started: float) -> None:
    total = sum(result.bytes for result in results)
    print(f"done in {time.perf_counter() - started:.1f} s, {total / 1e6:.2f} MB of ONNX")


def _command_convert(args: argparse.Namespace) -> int:
    from .convert import ConvertOptions, convert

    started = time.perf_counter()
    options = ConvertOptions(
        checkpoint=Path(args.checkpoint),
        out_dir=Path(args.out_dir),
        taesd=Path(args.taesd) if args.taesd else None,
        arch=args.arch_name,
        controlnet_inputs=args.controlnet_inputs,
        ip_adapter=_ip_adapter_request(args),
        **_export_settings(args),
    )
    _print_results(convert(options), started)
    return 0


def _command_random_init(args: argparse.Namespace) -> int:
    from .checkpoint import build_random_checkpoint
    from .configs import get_arch
    from .convert import ConvertOptions, convert

    started = time.perf_counter()
    arch = get_arch(args.arch)
    ip_adapter = _ip_adapter_request(args)
    keep = args.save_checkpoint is not None
    checkpoint = Path(args.save_checkpoint) if keep else Path(tempfile.mkdtemp(prefix="sdx-checkpoint-"))
    try:
        print(f"building {arch.name} with the {args.vae} VAE, seed {args.seed} -> {checkpoint}")
        build_random_checkpoint(
            arch, args.vae, checkpoint, seed=args.seed, tokenizer_dir=Path(args.tokenizer) if args.tokenizer else None
        )
        options = ConvertOptions(
            checkpoint=checkpoint,
            out_dir=Path(args.out),
            arch=arch.name,
            controlnet_inputs=args.controlnet_inputs,
            ip_adapter=ip_adapter,
            **_export_settings(args),
        )
        _print_results(convert(options), started)
    finally:
        if not keep:
            shutil.rmtree(checkpoint, ignore_errors=True)
    return 0


def _command_controlnet(args: argparse.Namespace) -> int:
    from .controlnet import ControlNetExportOptions, build_random_controlnet, export_controlnet, load_controlnet

    started = time.perf_counter()
    if args.random_init:
        if args.arch is None:
            raise ValueError(f"--random-init needs --arch (one of {', '.join(ARCH_NAMES)})")
        print(f"building a {args.arch} ControlNet, {args.conditioning_channels} channels, seed {args.seed}")
        controlnet = build_random_controlnet(args.arch, args.conditioning_channels, args.seed)
        source = {"kind": "random-init", "seed": args.seed}
        if args.save_checkpoint:
            controlnet.save_pretrained(args.save_checkpoint)
    else:
        controlnet = load_controlnet(Path(args.source))
        source = {"kind": "diffusers", "folder": Path(args.source).resolve().name}
    options = ControlNetExportOptions(
        out_dir=Path(args.out),
        arch=args.arch,
        source=source,
        **_export_settings(args),
    )
    _print_results([export_controlnet(controlnet, options)], started)
    return 0


def _command_ip_adapter_image(args: argparse.Namespace) -> int:
    from .configs import detect_arch
    from .convert import resolve_device
    from .ip_adapter_export import export_image_side, meta_unet

    started = time.perf_counter()
    request = _ip_adapter_request(args)
    if request is None:
        raise ValueError("give --ip-adapter FILE or --ip-adapter-random regular|plus")
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    unet = meta_unet(args.arch, checkpoint)
    arch = args.arch or detect_arch(dict(unet.config))
    shapes = _shapes(args)
    shapes.validate()
    results = export_image_side(
        request,
        unet,
        arch,
        Path(args.out),
        args.dtype,
        shapes,
        resolve_device(args.device),
        args.exporter,
        args.short_names or args.compact_graph,
        with_encoder=args.with_image_encoder,
        compact=args.compact_graph,
    )
    _print_results(results, started)
    return 0


def _command_lora_goldens(args: argparse.Namespace) -> int:
    from .lora_goldens import record

    record(Path(args.checkpoint), Path(args.fixture_goldens), Path(args.out_dir), Path(args.out), args.seed)
    return 0


def _command_random_lora(args: argparse.Namespace) -> int:
    from .lora_goldens import random_lora

    count = random_lora(Path(args.checkpoint), Path(args.out), args.rank, args.seed)
    print(f"wrote {args.out}: {count} layers at rank {args.rank}")
    return 0


def _command_controlnet_goldens(args: argparse.Namespace) -> int:
    from .controlnet_goldens import make_controlnet_goldens

    report = make_controlnet_goldens(
        Path(args.checkpoint),
        Path(args.model_dir),
        [(Path(checkpoint), Path(folder)) for checkpoint, folder in args.controlnet],
        Path(args.out),
    )
    print("onnxruntime max abs diff: " + json.dumps({name: float(f"{value:.3g}") for name, value in report.items()}))
    print(f"wrote {args.out}")
    return 0


def _command_ip_adapter_goldens(args: argparse.Namespace) -> int:
    from .ip_adapter_goldens import make_ip_adapter_goldens

    report = make_ip_adapter_goldens(
        Path(args.checkpoint),
        Path(args.model_dir),
        regular=Path(args.ip_adapter),
        plus=(Path(args.plus[0]), Path(args.plus[1])),
        controlnet_unet=Path(args.controlnet_unet),
        controlnet=(Path(args.controlnet[0]), Path(args.controlnet[1])),
        images=[Path(image) for image in args.image],
        out_file=Path(args.out),
        plain_model=Path(args.plain_model) if args.plain_model else None,
    )
    print("onnxruntime max abs diff: " + json.dumps({name: float(f"{value:.3g}") for name, value in report.items()}))
    print(f"wrote {args.out}")
    return 0


def _command_goldens(args: argparse.Namespace) -> int:
    from .goldens import make_goldens

    report = make_goldens(
        Path(args.checkpoint), Path(args.model_dir), Path(args.out), taesd=Path(args.taesd) if args.taesd else None
    )
    print(
        "onnxruntime max abs diff per model: "
        + json.dumps({name: float(f"{value:.3g}") for name, value in report.items()})
    )
    print(f"wrote {args.out}")
    return 0


def _command_tokenizer_ids(args: argparse.Namespace) -> int:
    from .tokenizer_ids import make_tokenizer_ids, parse_tokenizer_argument

    tokenizers = [parse_tokenizer_argument(argument) for argument in args.tokenizer_dirs]
    make_tokenizer_ids(tokenizers, Path(args.prompts), Path(args.out))
    print(f"wrote {args.out}")
    return 0


def _command_scheduler_goldens(args: argparse.Namespace) -> int:
    from .scheduler_goldens import make_scheduler_goldens

    report = make_scheduler_goldens(Path(args.out))
    print(f"wrote {args.out} ({report['cases']} configs, {report['bytes'] / 1e3:.0f} kB)")
    return 0


def _command_randn_goldens(args: argparse.Namespace) -> int:
    from .randn_goldens import make_randn_goldens

    counts = make_randn_goldens(Path(args.out))
    print(f"wrote {args.out}: " + ", ".join(f"{count} {name}" for name, count in counts.items()))
    return 0


def _command_stream_goldens(args: argparse.Namespace) -> int:
    from .stream_goldens import record

    record(
        Path(args.checkpoint), Path(args.streamdiffusion_src), Path(args.fixture_goldens), Path(args.out), args.streamdiffusion_commit
    )
    return 0


def _command_time_original(args: argparse.Namespace) -> int:
    from .time_original import main as time_original_main

    return time_original_main(args)


def _command_versions(args: argparse.Namespace) -> int:
    versions = describe_versions()
    width = max(len(name) for name in versions)
    for name, version in versions.items():
        print(f"  {name:<{width}}  {version}")
    missing = [
        name
        for name in ("torch", "transformers", "diffusers", "onnx", "onnxruntime")
        if versions[name].startswith("unavailable")
    ]
    if missing:
        print(f"missing required libraries: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every command."""
    parser = argparse.ArgumentParser(
        prog="python3 -m streamdiffusion_export",
        description="Export Stable Diffusion checkpoints to ONNX model folders for StreamDiffusion (Node.js).",
    )
    parser.add_argument("--version", action="version", version=f"{TOOL_NAME} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="diffusers checkpoint folder -> ONNX model folder")
    convert.add_argument("checkpoint", help="diffusers Stable Diffusion folder (model_index.json, unet/, vae/, ...)")
    convert.add_argument("out_dir", help="model folder to write")
    convert.add_argument("--taesd", help="AutoencoderTiny folder to export instead of the checkpoint's VAE")
    convert.add_argument(
        "--arch", dest="arch_name", default=None, help="arch name for model_index.json (default: detected)"
    )
    _add_export_arguments(convert)
    _add_controlnet_inputs_argument(convert)
    _add_ip_adapter_arguments(convert)
    convert.set_defaults(run=_command_convert)

    random_init = commands.add_parser("random-init", help="random-weight model of a known architecture")
    random_init.add_argument("--arch", required=True, choices=ARCH_NAMES)
    random_init.add_argument("--vae", required=True, choices=VAE_KINDS)
    random_init.add_argument("--out", required=True, help="model folder to write")
    random_init.add_argument("--seed", type=int, default=0)
    random_init.add_argument("--save-checkpoint", help="keep the diffusers checkpoint here (else a temp dir)")
    random_init.add_argument("--tokenizer", help="CLIP tokenizer folder to use instead of the tool-made one")
    _add_export_arguments(random_init)
    _add_controlnet_inputs_argument(random_init)
    _add_ip_adapter_arguments(random_init)
    random_init.set_defaults(run=_command_random_init)

    ip_adapter_image = commands.add_parser(
        "ip-adapter-image",
        help="the image side of an IP-Adapter (image_projection/, optionally image_encoder/ + feature_extractor/)",
    )
    unet_source = ip_adapter_image.add_mutually_exclusive_group(required=True)
    unet_source.add_argument("--arch", choices=ARCH_NAMES, help="the UNet architecture the adapter is for")
    unet_source.add_argument("--checkpoint", help="diffusers folder whose unet/config.json the adapter is for")
    ip_adapter_image.add_argument("--out", required=True, help="folder to write")
    ip_adapter_image.add_argument(
        "--with-image-encoder", action="store_true", help="also write image_encoder/ and feature_extractor/"
    )
    _add_ip_adapter_source_arguments(ip_adapter_image.add_argument_group("IP-Adapter"))
    ip_adapter_image.add_argument(
        "--dtype", choices=("fp32", "fp16"), default="fp32", help="weights and float I/O dtype"
    )
    ip_adapter_image.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    ip_adapter_image.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto")
    ip_adapter_image.add_argument("--short-names", action="store_true", help="short node and tensor names")
    _add_compact_graph_argument(ip_adapter_image)
    _add_shape_arguments(ip_adapter_image)
    ip_adapter_image.set_defaults(run=_command_ip_adapter_image)

    controlnet = commands.add_parser(
        "controlnet", help="diffusers ControlNetModel folder, or a random one of an arch -> ONNX ControlNet folder"
    )
    source = controlnet.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="diffusers ControlNetModel folder (config.json + weights)")
    source.add_argument("--random-init", action="store_true", help="random weights for --arch (seeded)")
    controlnet.add_argument(
        "--arch",
        default=None,
        help=f"with --random-init the architecture ({', '.join(ARCH_NAMES)}); "
        "with --from the name recorded (default: detected)",
    )
    controlnet.add_argument(
        "--conditioning-channels", type=int, default=3, help="control image channels (--random-init; default 3)"
    )
    controlnet.add_argument("--seed", type=int, default=0, help="--random-init seed (default 0)")
    controlnet.add_argument("--out", required=True, help="ControlNet folder to write")
    controlnet.add_argument("--save-checkpoint", help="--random-init: keep the diffusers ControlNetModel here")
    _add_export_arguments(controlnet)
    controlnet.set_defaults(run=_command_controlnet)

    controlnet_goldens = commands.add_parser(
        "controlnet-goldens", help="PyTorch ControlNet residuals and UNet outputs with them, for fixed inputs"
    )
    controlnet_goldens.add_argument("checkpoint", help="diffusers checkpoint the model folder was made from")
    controlnet_goldens.add_argument("model_dir", help="model folder exported with --controlnet-inputs")
    controlnet_goldens.add_argument(
        "--controlnet",
        nargs=2,
        action="append",
        required=True,
        metavar=("CHECKPOINT", "FOLDER"),
        help="a diffusers ControlNetModel folder and its exported ControlNet folder (named after FOLDER); "
        "give one or two, the first is scaled alone and both are summed",
    )
    controlnet_goldens.add_argument("--out", required=True, help="golden JSON file to write (.gz: gzip-compressed)")
    controlnet_goldens.set_defaults(run=_command_controlnet_goldens)

    lora_goldens = commands.add_parser(
        "lora-goldens", help="two random LoRAs (kohya and PEFT names) for tiny-sd-turbo and the outputs with them fused"
    )
    lora_goldens.add_argument("checkpoint", help="diffusers checkpoint with the tiny-sd-turbo fixture weights")
    lora_goldens.add_argument(
        "--fixture-goldens",
        default="fixtures/goldens/tiny-sd-turbo.json.gz",
        help="goldens proving the checkpoint's weights",
    )
    lora_goldens.add_argument("--out-dir", default="fixtures/loras", help="folder for kohya.safetensors and peft.safetensors")
    lora_goldens.add_argument("--out", default="fixtures/goldens/lora.json.gz", help="golden file to write (.gz: gzip-compressed)")
    lora_goldens.add_argument("--seed", type=int, default=50, help="seed of the LoRA weights")
    lora_goldens.set_defaults(run=_command_lora_goldens)

    random_lora = commands.add_parser("random-lora", help="a random kohya LoRA on every attention projection (for timing hot LoRA)")
    random_lora.add_argument("checkpoint", help="diffusers checkpoint (unet/, text_encoder/)")
    random_lora.add_argument("--out", required=True, help=".safetensors file to write")
    random_lora.add_argument("--rank", type=int, default=16)
    random_lora.add_argument("--seed", type=int, default=60)
    random_lora.set_defaults(run=_command_random_lora)

    ip_adapter_goldens = commands.add_parser(
        "ip-adapter-goldens",
        help="IP-Adapter goldens from transformers/diffusers in PyTorch (preprocess, image encoder, projections, UNet)",
    )
    ip_adapter_goldens.add_argument("checkpoint", help="diffusers checkpoint the model folder was made from")
    ip_adapter_goldens.add_argument("model_dir", help="fp32 model folder made with the regular IP-Adapter")
    ip_adapter_goldens.add_argument(
        "--ip-adapter", required=True, help="the regular IP-Adapter the folder was made with (--save-ip-adapter folder)"
    )
    ip_adapter_goldens.add_argument(
        "--plus",
        nargs=2,
        required=True,
        metavar=("ADAPTER", "FOLDER"),
        help="a Plus IP-Adapter sharing the regular one's to_k_ip/to_v_ip, and its ip-adapter-image folder",
    )
    ip_adapter_goldens.add_argument(
        "--controlnet-unet", required=True, help="folder with the same UNet exported with --controlnet-inputs"
    )
    ip_adapter_goldens.add_argument(
        "--controlnet",
        nargs=2,
        required=True,
        metavar=("CHECKPOINT", "FOLDER"),
        help="a diffusers ControlNetModel folder and its exported ControlNet folder",
    )
    ip_adapter_goldens.add_argument(
        "--image", action="append", required=True, help="an image file (give two; named after the file)"
    )
    ip_adapter_goldens.add_argument(
        "--plain-model",
        help="model folder with the same base weights and ControlNet inputs, no adapter (checked against 'plain')",
    )
    ip_adapter_goldens.add_argument("--out", required=True, help="golden JSON file to write (.gz: gzip-compressed)")
    ip_adapter_goldens.set_defaults(run=_command_ip_adapter_goldens)

    goldens = commands.add_parser("goldens", help="PyTorch reference inputs/outputs of every ONNX model")
    goldens.add_argument("checkpoint", help="diffusers checkpoint the model folder was made from")
    goldens.add_argument("model_dir", help="model folder written by convert / random-init")
    goldens.add_argument("--out", required=True, help="golden JSON file to write (.gz: gzip-compressed)")
    goldens.add_argument("--taesd", help="AutoencoderTiny folder, when the model folder was converted with --taesd")
    goldens.set_defaults(run=_command_goldens)

    tokenizer_ids = commands.add_parser(
        "tokenizer-ids", help="token ids of prompts through transformers' CLIPTokenizer"
    )
    tokenizer_ids.add_argument(
        "tokenizer_dirs", nargs="+", metavar="TOKENIZER_DIR", help="tokenizer folder(s), optionally NAME=DIR"
    )
    tokenizer_ids.add_argument("prompts", help="prompts.json: a list of strings")
    tokenizer_ids.add_argument("--out", required=True, help="golden JSON file to write (.gz: gzip-compressed)")
    tokenizer_ids.set_defaults(run=_command_tokenizer_ids)

    scheduler_goldens = commands.add_parser(
        "scheduler-goldens", help="diffusers LCMScheduler betas, timesteps and boundary scalings for several configs"
    )
    scheduler_goldens.add_argument("--out", required=True, help="golden JSON file to write (.gz: gzip-compressed)")
    scheduler_goldens.set_defaults(run=_command_scheduler_goldens)

    randn_goldens = commands.add_parser(
        "randn-goldens", help="torch.randn on the CPU for fixed seeds and shapes (bit patterns)"
    )
    randn_goldens.add_argument("--out", required=True, help="golden JSON file to write (.gz: gzip-compressed)")
    randn_goldens.set_defaults(run=_command_randn_goldens)

    stream_goldens = commands.add_parser(
        "stream-goldens", help="x0 latents of the Python original (cumulo-autumn/StreamDiffusion) per stream mode"
    )
    stream_goldens.add_argument("checkpoint", help="diffusers checkpoint with the tiny-sd-turbo fixture weights")
    _add_original_source_argument(stream_goldens)
    stream_goldens.add_argument(
        "--fixture-goldens",
        default="fixtures/goldens/tiny-sd-turbo.json.gz",
        help="goldens proving the checkpoint's weights",
    )
    stream_goldens.add_argument(
        "--streamdiffusion-commit", help="commit of the original's source, recorded in the goldens (found by git when it is a checkout)"
    )
    stream_goldens.add_argument("--out", required=True, help="golden JSON file to write (.json.gz: gzip-compressed)")
    stream_goldens.set_defaults(run=_command_stream_goldens)

    time_original = commands.add_parser(
        "time-original", help="img2img speed of the Python original (PyTorch eager, CUDA) on a checkpoint, for pnpm bench"
    )
    time_original.add_argument("checkpoint", help="diffusers checkpoint (e.g. random-init --save-checkpoint)")
    _add_original_source_argument(time_original)
    time_original.add_argument("--size", type=int, default=512, help="width and height in pixels (default 512)")
    time_original.add_argument("--steps", default="45", help="t_index_list, comma-separated (default 45)")
    time_original.add_argument("--cfg", default="none", choices=("none", "self", "initialize", "full"))
    time_original.add_argument("--frames", type=int, default=100, help="timed calls (default 100)")
    time_original.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    time_original.add_argument("--dtype", default="fp16", choices=("fp16", "fp32"))
    time_original.add_argument("--json", action="store_true", help="print JSON")
    time_original.set_defaults(run=_command_time_original)

    versions = commands.add_parser("versions", help="print the versions of the libraries in use")
    versions.set_defaults(run=_command_versions)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses the arguments and runs the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    # versions and randn-goldens need neither diffusers nor transformers.
    if args.command not in ("versions", "randn-goldens"):
        _quiet_libraries()
    try:
        return int(args.run(args))
    except (ValueError, FileNotFoundError) as error:
        # Bad arguments or folders: say what is wrong without a traceback (unless asked for one).
        if os.environ.get("STREAMDIFFUSION_TRACEBACK"):
            raise
        print(f"error: {error} (STREAMDIFFUSION_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 2
