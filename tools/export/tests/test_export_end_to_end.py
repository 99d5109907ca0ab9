"""End to end: the export CLI's ``random-init`` and ``convert`` write model folders that hold what the runtime reads.

Runs ``python -m streamdiffusion_export`` as a subprocess (the CLI itself is under test) into a temporary
folder and checks the results with onnx, onnxruntime (CPU) and diffusers in PyTorch:

1. ``random-init --arch tiny-sd15 --vae kl --dtype fp16`` (dynamic shapes) and ``random-init --arch
   tiny-sd-turbo --vae taesd --dtype fp32 --static --batch 2 --height 64 --width 128``: the folder
   layout, the ONNX element types (fp16 or fp32 floats, int32 ``input_ids``), symbolic dims for dynamic
   and concrete ones for static exports, and what ``@streamdiffusion/core`` and the CLI read
   (packages/core/src/model-folder/*.ts: VAE ``scaling_factor``, class and block count, the scheduler's
   ``beta_schedule``, the tokenizer files, the UNet's input names and ranks; packages/cli's ``models``
   command: ``streamdiffusion_export.arch``/``dtype``/``controlnet_inputs``).
2. ``convert`` of the static export's ``--save-checkpoint`` folder into a dynamic fp32 folder: its four
   models compute what the ``random-init`` ones compute (so ``convert`` reads a diffusers checkpoint).
3. The exported UNets against diffusers' ``UNet2DConditionModel`` loaded from the saved checkpoints.

Needs torch, diffusers (installed or at .vendor/diffusers/src), transformers, onnx, onnxruntime and numpy;
skipped without them. 30-60 s on two CPU cores (three exports of 10-19 s each, the rest in-process).

Run from the repository root:
``PYTHONPATH=tools/export python3 -m unittest tools/export/tests/test_export_end_to_end.py -v``
(or with the other tests: ``PYTHONPATH=tools/export python3 -m unittest discover tools/export/tests``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from streamdiffusion_export.environment import REPO_ROOT, VENDORED_DIFFUSERS_SRC, prepare_diffusers_import

#: What the export tool and these checks import, besides diffusers (which may be vendored source).
REQUIREMENTS = ("torch", "transformers", "onnx", "onnxruntime", "numpy")
#: What is missing here; the skip reason names all of it.
MISSING = [name for name in REQUIREMENTS if importlib.util.find_spec(name) is None]
if not MISSING:
    try:
        import numpy as np
        import onnx
        import torch
        from streamdiffusion_export.agreement import cpu_session

        prepare_diffusers_import()  # diffusers installed, or its source at .vendor/diffusers/src
        import diffusers

        diffusers.logging.set_verbosity_error()  # no "install accelerate" advice on every from_pretrained
    except ImportError as error:
        MISSING.append(f"an import failed: {error}")

#: Components every model folder has, each with model.onnx and config.json.
ONNX_COMPONENTS = ("unet", "vae_encoder", "vae_decoder", "text_encoder")
#: Every file of a model folder without IP-Adapter (tiny models: no external data; no tokenizer.json).
FOLDER_FILES = sorted(
    ["model_index.json", "scheduler/scheduler_config.json"]
    + [f"{component}/{name}" for component in ONNX_COMPONENTS for name in ("model.onnx", "config.json")]
    + [f"tokenizer/{name}" for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")]
)
#: Beta schedules the TypeScript LCM scheduler computes (packages/core model-folder.ts BETA_SCHEDULES).
RUNTIME_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: Scheduler settings the tool writes for an SD 1.5 / SD 2.1 (epsilon) source (README "The model folder").
LCM_SETTINGS = {
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "original_inference_steps": 50,
    "timestep_spacing": "leading",
    "steps_offset": 1,
}
#: Width of the tiny archs' text embeddings (cross_attention_dim, CLIP hidden size).
TEXT_WIDTH = 32
#: The static export's sizes: UNet batch 2 (VAE and text encoder batch 1), 64x128 pixels, latent 8x16.
STATIC = {"batch": 2, "height": 64, "width": 128, "vae_batch": 1, "text_batch": 1}

#: Input and output dims of a dynamic export, by component (README "The model folder").
DYNAMIC_DIMS = {
    "unet": (
        {
            "sample": ["batch", 4, "height", "width"],
            "timestep": ["batch"],
            "encoder_hidden_states": ["batch", "sequence", TEXT_WIDTH],
        },
        {"out_sample": ["batch", 4, "height", "width"]},
    ),
    "vae_encoder": (
        {"sample": ["batch", 3, "height", "width"]},
        {"latent_sample": ["batch", 4, "latent_height", "latent_width"]},
    ),
    "vae_decoder": (
        {"latent_sample": ["batch", 4, "height", "width"]},
        {"sample": ["batch", 3, "image_height", "image_width"]},
    ),
    "text_encoder": (
        {"input_ids": ["batch", 77]},
        {"last_hidden_state": ["batch", 77, TEXT_WIDTH], "pooler_output": ["batch", TEXT_WIDTH]},
    ),
}
#: The same for the static export: every dim a number.
STATIC_DIMS = {
    "unet": (
        {"sample": [2, 4, 8, 16], "timestep": [2], "encoder_hidden_states": [2, 77, TEXT_WIDTH]},
        {"out_sample": [2, 4, 8, 16]},
    ),
    "vae_encoder": ({"sample": [1, 3, 64, 128]}, {"latent_sample": [1, 4, 8, 16]}),
    "vae_decoder": ({"latent_sample": [1, 4, 8, 16]}, {"sample": [1, 3, 64, 128]}),
    "text_encoder": (
        {"input_ids": [1, 77]},
        {"last_hidden_state": [1, 77, TEXT_WIDTH], "pooler_output": [1, TEXT_WIDTH]},
    ),
}

#: Same weights, same graph but for fixed or dynamic shapes: onnxruntime gives (nearly) the same numbers.
SAME_WEIGHTS_ATOL = 1e-5
#: onnxruntime (CPU, fp32) against diffusers in PyTorch (float32, CPU); measured ~1e-6 on outputs up to ~1.5.
FP32_ATOL = 1e-4
#: fp16 ONNX against the float32 PyTorch reference on the same (fp16-rounded) inputs, times max(1, max|ref|):
#: the tolerance the tool's own goldens check uses.
FP16_RTOL = 2e-2


def _run_tool(*args: str) -> str:
    """Runs the export CLI as a user would; returns its stdout, fails the test with its output on error."""
    paths = [str(REPO_ROOT / "tools" / "export")]
    if VENDORED_DIFFUSERS_SRC.is_dir():
        paths.append(str(VENDORED_DIFFUSERS_SRC))
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "STREAMDIFFUSION_TRACEBACK": "1"}
    command = [sys.executable, "-m", "streamdiffusion_export", *args]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command[1:])} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result.stdout


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _signature(path: Path) -> tuple[dict[str, tuple[str, list]], dict[str, tuple[str, list]]]:
    """{name: (element type, dims)} of a model's inputs and outputs; dims are names or numbers (0 = unknown)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values) -> dict[str, tuple[str, list]]:
        return {
            value.name: (
                onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type),
                [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim],
            )
            for value in values
        }

    return describe(graph.input), describe(graph.output)


def _unet_inputs(batch: int, height: int, width: int, seed: int) -> dict[str, np.ndarray]:
    """Float32 UNet inputs; the timesteps are integers, exact in float16 too."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "sample": torch.randn(batch, 4, height, width, generator=generator).numpy(),
        "timestep": np.linspace(999, 499, batch).round().astype(np.float32),
        "encoder_hidden_states": torch.randn(batch, 77, TEXT_WIDTH, generator=generator).numpy(),
    }


def _torch_unet(checkpoint: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Runs diffusers' UNet2DConditionModel from the checkpoint folder, float32 on the CPU."""
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(checkpoint / "unet"), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        output = unet(
            torch.from_numpy(inputs["sample"]),
            torch.from_numpy(inputs["timestep"]),
            encoder_hidden_states=torch.from_numpy(inputs["encoder_hidden_states"]),
            return_dict=False,
        )[0]
    return output.numpy()


def _max_abs_diff(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first.astype(np.float64) - second.astype(np.float64)).max())


@unittest.skipUnless(
    not MISSING,
    "runs the export tool, which needs torch, transformers, diffusers (installed or at .vendor/diffusers/src), "
    f"onnx, onnxruntime and numpy; missing: {', '.join(MISSING)}",
)
class ExportEndToEndTest(unittest.TestCase):
    """Three CLI runs shared by every test: a dynamic fp16 folder, a static fp32 folder, a converted folder."""

    @classmethod
    def setUpClass(cls) -> None:
        scratch = tempfile.TemporaryDirectory(prefix="sdx-export-end-to-end-")
        cls.addClassCleanup(scratch.cleanup)  # also when an export below fails
        root = Path(scratch.name)
        cls.fp16 = root / "tiny-sd15-fp16"
        cls.fp16_checkpoint = root / "tiny-sd15-checkpoint"
        cls.static = root / "tiny-sd-turbo-static"
        cls.static_checkpoint = root / "tiny-sd-turbo-checkpoint"
        cls.converted = root / "tiny-sd-turbo-converted"
        # fp16 traces on CUDA when there is one (device auto); the fp32 folders trace on the CPU.
        fp16_arguments = "--arch tiny-sd15 --vae kl --dtype fp16".split()
        _run_tool("random-init", *fp16_arguments, "--out", str(cls.fp16), "--save-checkpoint", str(cls.fp16_checkpoint))
        static_arguments = "--arch tiny-sd-turbo --vae taesd --dtype fp32 --device cpu --static".split()
        static_arguments += [f"--{key}={STATIC[key]}" for key in ("batch", "height", "width")]
        _run_tool(
            "random-init", *static_arguments, "--out", str(cls.static), "--save-checkpoint", str(cls.static_checkpoint)
        )
        # No --arch: convert detects tiny-sd-turbo from the UNet config.
        cls.convert_output = _run_tool(
            "convert", str(cls.static_checkpoint), str(cls.converted), "--dtype", "fp32", "--device", "cpu"
        )

    def _folders(self) -> dict[str, Path]:
        return {"random-init fp16": self.fp16, "random-init static": self.static, "convert": self.converted}

    def test_folders_hold_exactly_the_model_folder_files(self) -> None:
        for label, folder in self._folders().items():
            with self.subTest(label):
                files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
                self.assertEqual(files, FOLDER_FILES)

    def test_element_types_follow_the_dtype_and_input_ids_are_int32(self) -> None:
        for label, folder, float_type in (
            ("random-init fp16", self.fp16, "FLOAT16"),
            ("random-init static", self.static, "FLOAT"),
            ("convert", self.converted, "FLOAT"),
        ):
            for component in ONNX_COMPONENTS:
                inputs, outputs = _signature(folder / component / "model.onnx")
                for name, (element_type, _) in {**inputs, **outputs}.items():
                    expected = "INT32" if name == "input_ids" else float_type
                    with self.subTest(f"{label} {component} {name}"):
                        self.assertEqual(element_type, expected)

    def test_dynamic_exports_have_named_dims(self) -> None:
        for label, folder in (("random-init fp16", self.fp16), ("convert", self.converted)):
            for component, (inputs, outputs) in DYNAMIC_DIMS.items():
                with self.subTest(f"{label} {component}"):
                    found_inputs, found_outputs = _signature(folder / component / "model.onnx")
                    self.assertEqual({name: dims for name, (_, dims) in found_inputs.items()}, inputs)
                    self.assertEqual({name: dims for name, (_, dims) in found_outputs.items()}, outputs)

    def test_static_export_has_only_numbers_as_dims(self) -> None:
        for component, (inputs, outputs) in STATIC_DIMS.items():
            with self.subTest(component):
                found_inputs, found_outputs = _signature(self.static / component / "model.onnx")
                self.assertEqual({name: dims for name, (_, dims) in found_inputs.items()}, inputs)
                self.assertEqual({name: dims for name, (_, dims) in found_outputs.items()}, outputs)

    def test_model_index_records_the_export(self) -> None:
        for label, folder, arch, dtype, vae, static in (
            ("random-init fp16", self.fp16, "tiny-sd15", "fp16", "kl", None),
            ("random-init static", self.static, "tiny-sd-turbo", "fp32", "taesd", STATIC),
            ("convert", self.converted, "tiny-sd-turbo", "fp32", "taesd", None),
        ):
            with self.subTest(label):
                index = _read_json(folder / "model_index.json")
                vae_class = {"kl": "AutoencoderKL", "taesd": "AutoencoderTiny"}[vae]
                self.assertEqual(index["_class_name"], "StableDiffusionPipeline")
                self.assertEqual(
                    {name: index[name] for name in (*ONNX_COMPONENTS, "tokenizer", "scheduler")},
                    {
                        "unet": ["diffusers", "UNet2DConditionModel"],
                        "vae_encoder": ["diffusers", vae_class],
                        "vae_decoder": ["diffusers", vae_class],
                        "text_encoder": ["transformers", "CLIPTextModel"],
                        "tokenizer": ["transformers", "CLIPTokenizer"],
                        "scheduler": ["diffusers", "LCMScheduler"],
                    },
                )
                info = index["streamdiffusion_export"]
                # What `streamdiffusion models list` shows (packages/cli/src/commands/models.ts exportInfo).
                self.assertEqual(
                    {key: info[key] for key in ("arch", "dtype", "vae", "static", "controlnet_inputs", "attention")},
                    {
                        "arch": arch,
                        "dtype": dtype,
                        "vae": vae,
                        "static": static,
                        "controlnet_inputs": False,
                        "attention": "plain",
                    },
                )
                self.assertNotIn("ip_adapter", info)
                self.assertEqual(info["opset"], {"torchscript": 17, "dynamo": 18}[info["exporter"]])
                for component in ONNX_COMPONENTS:
                    model = onnx.load(str(folder / component / "model.onnx"), load_external_data=False)
                    opsets = {entry.domain: entry.version for entry in model.opset_import}
                    self.assertEqual(opsets.get("", opsets.get("ai.onnx")), info["opset"], component)

    def test_component_configs_hold_what_the_runtime_reads(self) -> None:
        for label, folder, vae_class, scaling_factor in (
            ("random-init fp16", self.fp16, "AutoencoderKL", 0.18215),
            ("random-init static", self.static, "AutoencoderTiny", 1.0),
            ("convert", self.converted, "AutoencoderTiny", 1.0),
        ):
            with self.subTest(label):
                # model-folder.ts readVae: scaling_factor (never guessed), the class (kl/taesd), and the
                # spatial factor 2 ** (len(block_out_channels) - 1), which must be 8.
                for component in ("vae_encoder", "vae_decoder"):
                    config = _read_json(folder / component / "config.json")
                    self.assertEqual(config["_class_name"], vae_class, component)
                    self.assertEqual(config["scaling_factor"], scaling_factor, component)
                    self.assertEqual(config["latent_channels"], 4, component)
                    self.assertEqual(2 ** (len(config["block_out_channels"]) - 1), 8, component)
                # model-folder.ts schedulerConfigSchema and the LCM settings the tool writes.
                scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
                self.assertEqual(scheduler["_class_name"], "LCMScheduler")
                self.assertIn(scheduler["beta_schedule"], RUNTIME_BETA_SCHEDULES)
                self.assertEqual({key: scheduler[key] for key in LCM_SETTINGS}, LCM_SETTINGS)
                # capabilities.ts: the text-embedding width is the UNet's encoder_hidden_states last dim.
                self.assertEqual(_read_json(folder / "unet" / "config.json")["cross_attention_dim"], TEXT_WIDTH)
                self.assertEqual(_read_json(folder / "text_encoder" / "config.json")["hidden_size"], TEXT_WIDTH)
                vocab = _read_json(folder / "tokenizer" / "vocab.json")
                self.assertIn("<|startoftext|>", vocab)
                self.assertIn("<|endoftext|>", vocab)
                self.assertEqual(_read_json(folder / "text_encoder" / "config.json")["vocab_size"], len(vocab))

    def test_convert_prints_the_detected_arch(self) -> None:
        self.assertIn("(arch tiny-sd-turbo, fp32, vae taesd", self.convert_output)

    def test_converted_models_compute_what_the_random_init_models_compute(self) -> None:
        generator = np.random.default_rng(7)
        vocab_size = _read_json(self.static / "text_encoder" / "config.json")["vocab_size"]
        for component, (inputs, _) in STATIC_DIMS.items():
            with self.subTest(component):
                if component == "unet":
                    feed = _unet_inputs(STATIC["batch"], 8, 16, seed=11)
                elif component == "text_encoder":
                    feed = {"input_ids": generator.integers(0, vocab_size, size=inputs["input_ids"], dtype=np.int32)}
                else:
                    ((name, dims),) = inputs.items()
                    feed = {name: generator.uniform(-1, 1, size=dims).astype(np.float32)}
                expected = cpu_session(self.static / component / "model.onnx").run(None, feed)
                found = cpu_session(self.converted / component / "model.onnx").run(None, feed)
                for mine, theirs in zip(found, expected):
                    self.assertEqual(mine.shape, theirs.shape)
                    # Not trivially equal: the outputs carry signal.
                    self.assertGreater(float(np.abs(theirs).max()), 1e-3)
                    self.assertLessEqual(_max_abs_diff(mine, theirs), SAME_WEIGHTS_ATOL)

    def test_fp32_unets_match_diffusers_on_the_checkpoint(self) -> None:
        # The static folder at its size; the dynamic converted folder at a size and batch it was not traced at.
        for label, folder, (batch, height, width) in (
            ("random-init static", self.static, (STATIC["batch"], 8, 16)),
            ("convert", self.converted, (3, 16, 24)),
        ):
            with self.subTest(label):
                inputs = _unet_inputs(batch, height, width, seed=21)
                reference = _torch_unet(self.static_checkpoint, inputs)
                (found,) = cpu_session(folder / "unet" / "model.onnx").run(None, inputs)
                self.assertEqual(found.shape, reference.shape)
                self.assertGreater(float(np.abs(reference).max()), 0.1)
                self.assertLessEqual(_max_abs_diff(found, reference), FP32_ATOL)

    def test_fp16_unet_matches_diffusers_within_the_fp16_tolerance(self) -> None:
        inputs = _unet_inputs(2, 16, 24, seed=31)
        half = {name: value.astype(np.float16) for name, value in inputs.items()}
        reference = _torch_unet(self.fp16_checkpoint, {name: value.astype(np.float32) for name, value in half.items()})
        (found,) = cpu_session(self.fp16 / "unet" / "model.onnx").run(None, half)
        self.assertEqual(found.dtype, np.float16)
        self.assertEqual(found.shape, reference.shape)
        self.assertGreater(float(np.abs(reference).max()), 0.1)
        self.assertLessEqual(_max_abs_diff(found, reference), FP16_RTOL * max(1.0, float(np.abs(reference).max())))


if __name__ == "__main__":
    unittest.main()
