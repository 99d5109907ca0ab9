"""ControlNet export: the ONNX ControlNet and the UNet with residual inputs against diffusers in PyTorch.

Needs torch, diffusers (installed or at .vendor/diffusers/src), onnx and onnxruntime; skipped
without them. Builds micro-sd-turbo modules with random weights (no checkpoint on disk) and
exports them into a temporary folder: about 15 s on two CPU cores.

Run from the repository root: ``PYTHONPATH=tools/export python3 -m unittest discover tools/export/tests``.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np

from streamdiffusion_export.controlnet_goldens import control_image, unet_cases

try:
    import onnx
    import onnxruntime
    import torch

    from streamdiffusion_export.environment import prepare_diffusers_import

    prepare_diffusers_import()
    import diffusers  # noqa: F401

    MISSING = None
except ImportError as error:
    MISSING = str(error)

RESIDUALS = [f"down_block_residual_{index}" for index in range(12)] + ["mid_block_residual"]
#: Residual dims [channels, height, width] of micro-sd-turbo (widths 4/4/8/8) for latent h x w,
#: the DESIGN.md layout: three at h, one at h/2 (first width), two at h/2, one at h/4 (second
#: width), two at h/4, three at h/8 (last width), mid at h/8.
MICRO_RESIDUAL_DIMS = (
    [(4, "height", "width")] * 3
    + [(4, "height_div_2", "width_div_2")] * 3
    + [(4, "height_div_4", "width_div_4")]
    + [(8, "height_div_4", "width_div_4")] * 2
    + [(8, "height_div_8", "width_div_8")] * 4
)
#: onnxruntime (CPU, fp32) against PyTorch; measured ~1e-6 on outputs of magnitude ~1-5.
ATOL = 1e-4


def _dims(value) -> list:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


def _session(path: Path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class ControlImageTest(unittest.TestCase):
    def test_formula_gives_8_bit_values_that_differ_per_channel_and_controlnet(self) -> None:
        image = control_image(3, 64, 64, 0)
        self.assertEqual(image.dtype, np.float32)
        self.assertEqual(image.shape, (3, 64, 64))
        # i = 1: (2654435761 mod 2**32) >> 24 = 158.
        self.assertEqual(image[0, 0, 1], np.float32(158) / np.float32(255))
        pixels = np.round(image.astype(np.float64) * 255)
        np.testing.assert_array_equal(pixels.astype(np.float32) / np.float32(255), image)
        self.assertEqual((pixels.min(), pixels.max()), (0, 255))
        self.assertFalse(np.array_equal(image[0], image[1]))
        self.assertFalse(np.array_equal(control_image(3, 64, 64, 1), image))

    def test_unet_cases(self) -> None:
        names = [case.name for case in unet_cases(["a", "b"])]
        self.assertEqual(names, ["none", "a@1.0", "a@0.5", "a@0.7+b@0.4"])
        self.assertEqual([case.name for case in unet_cases(["a"])], ["none", "a@1.0", "a@0.5"])


@unittest.skipIf(MISSING, f"needs torch, diffusers, onnx and onnxruntime ({MISSING})")
class ControlNetExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from diffusers import UNet2DConditionModel

        from streamdiffusion_export.configs import get_arch
        from streamdiffusion_export.controlnet import build_random_controlnet
        from streamdiffusion_export.export_onnx import (
            ExportShapes,
            controlnet_spec,
            export_submodel,
            unet_spec,
        )

        cls.scratch = tempfile.TemporaryDirectory(prefix="sdx-controlnet-test-")
        folder = Path(cls.scratch.name)
        arch = get_arch("micro-sd-turbo")
        torch.manual_seed(1)
        cls.unet = UNet2DConditionModel(**arch.unet).eval()
        cls.canny = build_random_controlnet("micro-sd-turbo", 3, seed=5)
        cls.six = build_random_controlnet("micro-sd-turbo", 6, seed=6)
        shapes = ExportShapes()  # traced at batch 2, 128x128 pixels (latent 16x16)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
            # Export copies: fused attention swaps processors, and the references below stay diffusers'.
            unet_copy = UNet2DConditionModel(**arch.unet).eval()
            unet_copy.load_state_dict(cls.unet.state_dict())
            export_submodel(
                unet_spec(unet_copy, shapes, torch.float32, torch.device("cpu"), "fused", controlnet_inputs=True),
                folder / "residual-unet",
                static=False,
                short_names=True,
            )
            export_submodel(
                unet_spec(cls.unet, shapes, torch.float32, torch.device("cpu"), "plain"),
                folder / "plain-unet",
                static=False,
            )
            six_copy = build_random_controlnet("micro-sd-turbo", 6, seed=6)
            export_submodel(
                controlnet_spec(cls.canny, shapes, torch.float32, torch.device("cpu"), "plain"),
                folder / "canny",
                static=False,
            )
            export_submodel(
                controlnet_spec(six_copy, shapes, torch.float32, torch.device("cpu"), "fused"),
                folder / "six",
                static=False,
                short_names=True,
            )
            export_submodel(
                controlnet_spec(
                    build_random_controlnet("micro-sd-turbo", 3, seed=5),
                    ExportShapes(static=True, batch=1, height=64, width=128),
                    torch.float32,
                    torch.device("cpu"),
                ),
                folder / "canny-static",
                static=True,
            )
        cls.folder = folder

    @classmethod
    def tearDownClass(cls) -> None:
        cls.scratch.cleanup()

    def _inputs(self, batch: int, height: int, width: int, seed: int) -> dict[str, np.ndarray]:
        generator = torch.Generator().manual_seed(seed)
        return {
            "sample": torch.randn(batch, 4, height, width, generator=generator).numpy(),
            "timestep": np.linspace(999, 1, batch).astype(np.float32),
            "encoder_hidden_states": torch.randn(batch, 77, 32, generator=generator).numpy(),
        }

    def _torch_residuals(self, controlnet, inputs, cond: np.ndarray, scale: float = 1.0) -> list[np.ndarray]:
        with torch.no_grad():
            down, mid = controlnet(
                *(torch.from_numpy(value) for value in inputs.values()),
                torch.from_numpy(cond),
                conditioning_scale=scale,
                return_dict=False,
            )
        return [tensor.numpy() for tensor in (*down, mid)]

    def test_random_controlnet_is_seeded_and_its_zero_convolutions_are_not_zero(self) -> None:
        from streamdiffusion_export.controlnet import build_random_controlnet, zero_convolutions

        again = build_random_controlnet("micro-sd-turbo", 3, seed=5)
        for (name, mine), theirs in zip(self.canny.state_dict().items(), again.state_dict().values()):
            self.assertTrue(torch.equal(mine, theirs), name)
        for convolution in zero_convolutions(self.canny):
            self.assertGreater(float(convolution.weight.abs().max()), 0.0)
        self.assertEqual(self.six.config.conditioning_channels, 6)
        self.assertEqual(list(self.six.config.conditioning_embedding_out_channels), [4, 4, 8, 8])

    def test_controlnet_config_is_what_from_unet_gives(self) -> None:
        from diffusers import ControlNetModel, UNet2DConditionModel

        from streamdiffusion_export.configs import controlnet_config, get_arch

        for name in ("micro-sd-turbo", "tiny-sd-turbo", "tiny-sd15"):
            arch = get_arch(name)
            ours = ControlNetModel(**controlnet_config(arch.unet, 6, arch.controlnet_embedding_channels)).config
            theirs = ControlNetModel.from_unet(
                UNet2DConditionModel(**arch.unet),
                conditioning_embedding_out_channels=arch.controlnet_embedding_channels,
                load_weights_from_unet=False,
                conditioning_channels=6,
            ).config
            # Through JSON, as config.json holds it (lists and tuples alike).
            self.assertEqual(
                json.loads(json.dumps({key: value for key, value in ours.items() if not key.startswith("_")})),
                json.loads(json.dumps({key: value for key, value in theirs.items() if not key.startswith("_")})),
                name,
            )

    def test_controlnet_names_and_dims(self) -> None:
        for name, channels in (("canny", 3), ("six", 6)):
            model = onnx.load(str(self.folder / name / "model.onnx"))
            inputs = {value.name: _dims(value) for value in model.graph.input}
            self.assertEqual(
                inputs,
                {
                    "sample": ["batch", 4, "height", "width"],
                    "timestep": ["batch"],
                    "encoder_hidden_states": ["batch", "sequence", 32],
                    "controlnet_cond": ["batch", channels, "image_height", "image_width"],
                },
            )
            outputs = [(value.name, _dims(value)) for value in model.graph.output]
            expected = [(output, ["batch", *dims]) for output, dims in zip(RESIDUALS, MICRO_RESIDUAL_DIMS)]
            self.assertEqual(outputs, expected)
            self.assertEqual(model.graph.input[1].type.tensor_type.elem_type, onnx.TensorProto.FLOAT)

    def test_static_controlnet_dims(self) -> None:
        model = onnx.load(str(self.folder / "canny-static" / "model.onnx"))
        self.assertEqual(_dims(model.graph.input[3]), [1, 3, 64, 128])
        self.assertEqual(_dims(model.graph.output[0]), [1, 4, 8, 16])
        self.assertEqual(_dims(model.graph.output[-1]), [1, 8, 1, 2])

    def test_controlnet_onnx_matches_pytorch(self) -> None:
        for name, controlnet in (("canny", self.canny), ("six", self.six)):
            session = _session(self.folder / name / "model.onnx")
            self.assertEqual([output.name for output in session.get_outputs()], RESIDUALS)
            for batch, height, width in ((1, 8, 8), (3, 8, 16)):
                inputs = self._inputs(batch, height, width, seed=batch)
                channels = controlnet.config.conditioning_channels
                cond = np.stack([control_image(channels, height * 8, width * 8, item) for item in range(batch)])
                expected = self._torch_residuals(controlnet, inputs, cond)
                actual = session.run(None, {**inputs, "controlnet_cond": cond})
                self.assertEqual(len(actual), 13)
                for output, want, got in zip(RESIDUALS, expected, actual):
                    self.assertEqual(got.shape, want.shape, output)
                    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"{name} {output}")
                self.assertGreater(float(np.abs(expected[0]).max()), 0.1, "residuals should not be ~zero")

    def test_residual_unet_names_and_dims(self) -> None:
        model = onnx.load(str(self.folder / "residual-unet" / "model.onnx"))
        inputs = [(value.name, _dims(value)) for value in model.graph.input]
        self.assertEqual(
            inputs[:3],
            [
                ("sample", ["batch", 4, "height", "width"]),
                ("timestep", ["batch"]),
                ("encoder_hidden_states", ["batch", "sequence", 32]),
            ],
        )
        self.assertEqual(
            inputs[3:], [(output, ["batch", *dims]) for output, dims in zip(RESIDUALS, MICRO_RESIDUAL_DIMS)]
        )
        self.assertEqual(
            [(value.name, _dims(value)) for value in model.graph.output],
            [("out_sample", ["batch", 4, "height", "width"])],
        )
        self.assertTrue(all(node.name.startswith("n") and len(node.name) < 8 for node in model.graph.node))
        self.assertIn("com.microsoft", {entry.domain for entry in model.opset_import})

    def test_residual_unet_with_zero_residuals_is_the_plain_unet(self) -> None:
        residual_unet = _session(self.folder / "residual-unet" / "model.onnx")
        plain_unet = _session(self.folder / "plain-unet" / "model.onnx")
        canny = _session(self.folder / "canny" / "model.onnx")
        for batch, height, width in ((1, 8, 8), (2, 16, 8)):
            inputs = self._inputs(batch, height, width, seed=10 + batch)
            cond = np.zeros((batch, 3, height * 8, width * 8), dtype=np.float32)
            shapes = [residual.shape for residual in canny.run(None, {**inputs, "controlnet_cond": cond})]
            zeros = {name: np.zeros(shape, dtype=np.float32) for name, shape in zip(RESIDUALS, shapes)}
            (with_zeros,) = residual_unet.run(None, {**inputs, **zeros})
            (plain,) = plain_unet.run(None, inputs)
            with torch.no_grad():
                reference = self.unet(*(torch.from_numpy(value) for value in inputs.values()), return_dict=False)[0]
            np.testing.assert_allclose(with_zeros, plain, rtol=0, atol=ATOL)
            np.testing.assert_allclose(with_zeros, reference.numpy(), rtol=0, atol=ATOL)

    def test_residual_unet_matches_diffusers_with_scaled_and_summed_controlnets(self) -> None:
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

        residual_unet = _session(self.folder / "residual-unet" / "model.onnx")
        canny = _session(self.folder / "canny" / "model.onnx")
        six = _session(self.folder / "six" / "model.onnx")
        batch, height, width = 2, 8, 8
        inputs = self._inputs(batch, height, width, seed=20)
        canny_cond = np.stack([control_image(3, 64, 64, 0)] * batch)
        six_cond = np.stack([control_image(6, 64, 64, 1)] * batch)
        tensors = [torch.from_numpy(value) for value in inputs.values()]
        with torch.no_grad():
            down, mid = MultiControlNetModel([self.canny, self.six])(
                *tensors,
                [torch.from_numpy(canny_cond), torch.from_numpy(six_cond)],
                conditioning_scale=[0.7, 0.4],
                return_dict=False,
            )
            expected = self.unet(
                *tensors,
                down_block_additional_residuals=tuple(down),
                mid_block_additional_residual=mid,
                return_dict=False,
            )[0].numpy()
            plain = self.unet(*tensors, return_dict=False)[0].numpy()
        canny_residuals = canny.run(None, {**inputs, "controlnet_cond": canny_cond})
        six_residuals = six.run(None, {**inputs, "controlnet_cond": six_cond})
        summed = {
            name: a * np.float32(0.7) + b * np.float32(0.4)
            for name, a, b in zip(RESIDUALS, canny_residuals, six_residuals)
        }
        (actual,) = residual_unet.run(None, {**inputs, **summed})
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)
        self.assertGreater(float(np.abs(expected - plain).max()), 0.05, "the residuals should change the output")


@unittest.skipIf(MISSING, f"needs torch, diffusers, onnx and onnxruntime ({MISSING})")
class ControlNetCommandTest(unittest.TestCase):
    def test_controlnet_from_a_diffusers_folder_and_random_init_agree(self) -> None:
        from streamdiffusion_export.cli import main

        with tempfile.TemporaryDirectory(prefix="sdx-controlnet-cli-") as scratch:
            folder = Path(scratch)
            common = ["--device", "cpu", "--short-names"]
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
                status = main(
                    [
                        "controlnet", "--random-init", "--arch", "micro-sd-turbo", "--conditioning-channels", "6",
                        "--seed", "3", "--out", str(folder / "random"), "--save-checkpoint", str(folder / "checkpoint"),
                        *common,
                    ]
                )  # fmt: skip
                self.assertEqual(status, 0)
                status = main(
                    ["controlnet", "--from", str(folder / "checkpoint"), "--out", str(folder / "converted"), *common]
                )
                self.assertEqual(status, 0)
            for name in ("random", "converted"):
                self.assertEqual(
                    sorted(path.name for path in (folder / name).iterdir()),
                    ["config.json", "controlnet.json", "model.onnx"],
                )
            random_info = json.loads((folder / "random" / "controlnet.json").read_text())
            converted_info = json.loads((folder / "converted" / "controlnet.json").read_text())
            self.assertEqual(random_info["source"], {"kind": "random-init", "seed": 3})
            self.assertEqual(converted_info["source"], {"kind": "diffusers", "folder": "checkpoint"})
            for info in (random_info, converted_info):
                self.assertEqual(
                    {key: info[key] for key in ("arch", "dtype", "conditioning_channels", "down_block_residuals")},
                    {"arch": "micro-sd-turbo", "dtype": "fp32", "conditioning_channels": 6, "down_block_residuals": 12},
                )
            self.assertEqual(
                json.loads((folder / "random" / "config.json").read_text()),
                json.loads((folder / "converted" / "config.json").read_text()),
            )
            self.assertEqual(
                json.loads((folder / "random" / "config.json").read_text())["_class_name"], "ControlNetModel"
            )
            feeds = {
                "sample": np.ones((1, 4, 8, 8), dtype=np.float32),
                "timestep": np.array([500], dtype=np.float32),
                "encoder_hidden_states": np.full((1, 77, 32), 0.1, dtype=np.float32),
                "controlnet_cond": control_image(6, 64, 64, 0)[None],
            }
            random_out = _session(folder / "random" / "model.onnx").run(None, feeds)
            converted_out = _session(folder / "converted" / "model.onnx").run(None, feeds)
            for a, b in zip(random_out, converted_out):
                np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
    unittest.main()
