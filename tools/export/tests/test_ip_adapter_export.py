"""IP-Adapter export: random adapters, installation by diffusers, layer order, ONNX against diffusers.

Needs torch, transformers, diffusers (installed or at .vendor/diffusers/src), onnx, onnxruntime and
safetensors; skipped without them. Builds micro-sd-turbo modules with random weights and exports into
a temporary folder: about 20 s on two CPU cores.

Run from the repository root: ``PYTHONPATH=tools/export python3 -m unittest discover tools/export/tests``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np

from streamdiffusion_export.ip_adapter_goldens import LAYER_SCALES, unet_cases

try:
    import onnx
    import onnxruntime
    import safetensors  # noqa: F401
    import torch
    import transformers  # noqa: F401

    from streamdiffusion_export.environment import prepare_diffusers_import

    prepare_diffusers_import()
    import diffusers  # noqa: F401

    MISSING = None
except ImportError as error:
    MISSING = str(error)

#: The cross-attention layers of every SD 1.5/2.1-shaped UNet in diffusers' attn_processors order.
SD_LAYERS = (
    [f"down_blocks.{block}.attentions.{index}.transformer_blocks.0.attn2" for block in range(3) for index in range(2)]
    + [f"up_blocks.{block}.attentions.{index}.transformer_blocks.0.attn2" for block in (1, 2, 3) for index in range(3)]
    + ["mid_block.attentions.0.transformer_blocks.0.attn2"]
)
ATOL = 1e-4


def _session(path: Path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _dims(value) -> list:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


class CaseTableTest(unittest.TestCase):
    def test_unet_cases(self) -> None:
        cases = {case.name: case for case in unet_cases("style", "example")}
        self.assertEqual(
            list(cases),
            [
                "regular_scale1",
                "regular_layers",
                "regular_scale0",
                "per_entry_scales",
                "plus",
                "weighted_images",
                "uncond_mixed",
                "controlnet",
            ],
        )
        self.assertEqual(cases["regular_layers"].scales(16), [list(LAYER_SCALES)] * 2)
        self.assertEqual(cases["per_entry_scales"].scales(2), [[1.0, 1.0], [0.5, 0.5]])
        self.assertEqual(cases["uncond_mixed"].images, ("style", "uncond"))
        self.assertEqual(cases["plus"].scales(3), [[0.7] * 3] * 2)


@unittest.skipIf(MISSING, f"needs torch, transformers, diffusers, onnx, onnxruntime, safetensors ({MISSING})")
class IPAdapterExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from diffusers import UNet2DConditionModel

        from streamdiffusion_export.configs import get_arch
        from streamdiffusion_export.export_onnx import ExportShapes, export_submodel, unet_spec
        from streamdiffusion_export.ip_adapter import IPAdapterRequest, install_ip_adapter, resolve_ip_adapter

        cls.scratch = tempfile.TemporaryDirectory(prefix="sdx-ip-adapter-test-")
        folder = Path(cls.scratch.name)
        arch = get_arch("micro-sd-turbo")
        torch.manual_seed(1)
        cls.base = UNet2DConditionModel(**arch.unet).eval()
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
            cls.regular = resolve_ip_adapter(IPAdapterRequest(random_kind="regular", seed=3), cls.base, arch.ip_adapter)
            cls.plus = resolve_ip_adapter(
                IPAdapterRequest(random_kind="plus", seed=4, save_to=folder / "plus"), cls.base, arch.ip_adapter
            )
            cls.unet = copy.deepcopy(cls.base)
            cls.projection = install_ip_adapter(cls.unet, cls.regular)
            shapes = ExportShapes()  # traced at batch 2, latent 16x16
            for attention, controlnet_inputs in (("fused", False), ("plain", True)):
                export_submodel(
                    unet_spec(
                        copy.deepcopy(cls.unet),
                        shapes,
                        torch.float32,
                        torch.device("cpu"),
                        attention,
                        controlnet_inputs=controlnet_inputs,
                        ip_adapter_tokens=4,
                    ),
                    folder / attention,
                    static=False,
                    compact=attention == "fused",
                )
        cls.folder = folder

    @classmethod
    def tearDownClass(cls) -> None:
        cls.scratch.cleanup()

    def test_layer_order_is_down_up_mid(self) -> None:
        from streamdiffusion_export.ip_adapter import check_layer_order, cross_attention_layers, ip_layer_names

        self.assertEqual(ip_layer_names(self.unet), SD_LAYERS)
        self.assertEqual([name for name, _ in cross_attention_layers(self.base)], SD_LAYERS)
        # micro-sd-turbo widths 4/4/8/8: down 4,4,4,4,8,8; up (reversed widths) 8x3, 4x3, 4x3; mid 8.
        self.assertEqual([width for _, width in cross_attention_layers(self.base)], [4] * 4 + [8] * 5 + [4] * 6 + [8])
        with self.assertRaises(RuntimeError):
            check_layer_order(SD_LAYERS[-1:] + SD_LAYERS[:-1])

    def test_random_adapters_have_h94_keys_and_shapes(self) -> None:
        from streamdiffusion_export.ip_adapter import PLUS_DIM_HEAD, ip_adapter_kind

        regular, plus = self.regular.state_dict, self.plus.state_dict
        self.assertEqual(ip_adapter_kind(regular), "regular")
        self.assertEqual(ip_adapter_kind(plus), "plus")
        self.assertEqual(tuple(regular["image_proj"]["proj.weight"].shape), (4 * 32, 32))
        self.assertEqual(sorted(regular["image_proj"]), ["norm.bias", "norm.weight", "proj.bias", "proj.weight"])
        self.assertEqual(tuple(plus["image_proj"]["latents"].shape), (1, 16, 8))
        self.assertEqual(tuple(plus["image_proj"]["proj_in.weight"].shape), (8, 32))
        self.assertEqual(tuple(plus["image_proj"]["layers.3.0.to_q.weight"].shape), (PLUS_DIM_HEAD, 8))
        self.assertEqual(tuple(plus["image_proj"]["layers.3.0.to_kv.weight"].shape), (2 * PLUS_DIM_HEAD, 8))
        self.assertEqual(tuple(plus["image_proj"]["layers.0.1.3.weight"].shape), (8, 32))
        self.assertEqual(sorted(regular["ip_adapter"])[:2], ["1.to_k_ip.weight", "1.to_v_ip.weight"])
        self.assertEqual(tuple(regular["ip_adapter"]["31.to_v_ip.weight"].shape), (8, 32))
        norm = regular["image_proj"]["norm.weight"]
        self.assertLess(float((norm - 1).abs().max()), 0.5)
        self.assertEqual(self.plus.image_tokens, 16)
        self.assertEqual(self.plus.projection_input, "penultimate_hidden_states")

    def test_random_adapters_are_seeded_and_can_share_attention(self) -> None:
        from streamdiffusion_export.configs import get_arch
        from streamdiffusion_export.ip_adapter import IPAdapterRequest, resolve_ip_adapter

        sizes = get_arch("micro-sd-turbo").ip_adapter
        with contextlib.redirect_stdout(io.StringIO()):
            again = resolve_ip_adapter(IPAdapterRequest(random_kind="regular", seed=3), self.base, sizes)
            shared = resolve_ip_adapter(
                IPAdapterRequest(random_kind="plus", seed=5, attention_from=self.folder / "plus"), self.base, sizes
            )
        for part in ("image_proj", "ip_adapter"):
            for key, value in self.regular.state_dict[part].items():
                self.assertTrue(torch.equal(value, again.state_dict[part][key]), key)
        self.assertEqual(again.attention_id, self.regular.attention_id)
        self.assertEqual(shared.attention_id, self.plus.attention_id)
        self.assertNotEqual(shared.attention_id, self.regular.attention_id)
        self.assertFalse(
            torch.equal(shared.state_dict["image_proj"]["latents"], self.plus.state_dict["image_proj"]["latents"])
        )

    def test_saved_adapter_reads_back_with_its_source(self) -> None:
        from streamdiffusion_export.ip_adapter import attention_id_of_unet, load_ip_adapter

        loaded = load_ip_adapter(self.folder / "plus")
        self.assertEqual(loaded.source, "random-init seed 4")
        self.assertEqual(loaded.kind, "plus")
        self.assertEqual(loaded.attention_id, self.plus.attention_id)
        self.assertEqual(attention_id_of_unet(self.unet), self.regular.attention_id)
        with torch.no_grad():
            pixels = torch.randn(1, 3, 32, 32)
            a = loaded.image_encoder(pixel_values=pixels).image_embeds
            b = self.plus.image_encoder(pixel_values=pixels).image_embeds
        self.assertTrue(torch.equal(a, b))

    def test_unsupported_adapters_are_refused(self) -> None:
        from streamdiffusion_export.ip_adapter import ip_adapter_kind

        for key, name in (("proj.3.weight", "Full Face"), ("perceiver_resampler.proj_in.weight", "FaceID")):
            with self.assertRaisesRegex(ValueError, name):
                ip_adapter_kind({"image_proj": {key: torch.zeros(1)}, "ip_adapter": {}})

    def test_unet_names_and_dims(self) -> None:
        model = onnx.load(str(self.folder / "fused" / "model.onnx"))
        self.assertEqual(
            [(value.name, _dims(value)) for value in model.graph.input],
            [
                ("sample", ["batch", 4, "height", "width"]),
                ("timestep", ["batch"]),
                ("encoder_hidden_states", ["batch", "sequence", 32]),
                ("ip_adapter_scale", ["batch", 16]),
            ],
        )
        self.assertEqual(sum(node.op_type == "MultiHeadAttention" for node in model.graph.node), 16 * 3)
        plain = onnx.load(str(self.folder / "plain" / "model.onnx"))
        names = [value.name for value in plain.graph.input]
        self.assertEqual(names[3], "ip_adapter_scale")
        self.assertEqual(names[4:], [f"down_block_residual_{index}" for index in range(12)] + ["mid_block_residual"])
        self.assertFalse(any(node.op_type == "MultiHeadAttention" for node in plain.graph.node))

    def _diffusers(self, unet, sample, timestep, text, tokens, scales):
        from streamdiffusion_export.ip_adapter_export import diffusers_ip_unet, tokens_as_image_embeds

        with tokens_as_image_embeds(unet):
            return diffusers_ip_unet(unet, sample, timestep, text, tokens[:, None], scales).numpy()

    def test_onnx_matches_diffusers_per_entry_scales_and_both_token_counts(self) -> None:
        generator = torch.Generator().manual_seed(7)
        sample = torch.randn(2, 4, 8, 16, generator=generator)
        timestep = torch.tensor([999.0, 250.0])
        text = torch.randn(2, 77, 32, generator=generator)
        fused = _session(self.folder / "fused" / "model.onnx")
        for count in (4, 16):
            tokens = torch.randn(2, count, 32, generator=generator)
            rows = [torch.linspace(0.0, 1.5, 16), torch.full((16,), 0.5)]
            expected = np.concatenate(
                [
                    self._diffusers(self.unet, sample[i : i + 1], timestep[i : i + 1], text[i : i + 1],
                                    tokens[i : i + 1], rows[i].tolist())
                    for i in range(2)
                ]
            )  # fmt: skip
            feeds = {
                "sample": sample.numpy(),
                "timestep": timestep.numpy(),
                "encoder_hidden_states": torch.cat([text, tokens], dim=1).numpy(),
                "ip_adapter_scale": torch.stack(rows).numpy(),
            }
            (actual,) = fused.run(None, feeds)
            np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL, err_msg=f"{count} tokens")

    def test_scale_zero_is_the_plain_unet_and_scale_one_differs(self) -> None:
        generator = torch.Generator().manual_seed(8)
        inputs = {
            "sample": torch.randn(1, 4, 8, 8, generator=generator).numpy(),
            "timestep": np.array([500.0], dtype=np.float32),
        }
        text = torch.randn(1, 77, 32, generator=generator)
        with torch.no_grad():
            image = self.projection(torch.randn(1, 32, generator=generator))
            plain = self.base(torch.from_numpy(inputs["sample"]), torch.from_numpy(inputs["timestep"]), text).sample
        ehs = torch.cat([text, image], dim=1).numpy()
        fused = _session(self.folder / "fused" / "model.onnx")
        (at_zero,) = fused.run(
            None, {**inputs, "encoder_hidden_states": ehs, "ip_adapter_scale": np.zeros((1, 16), np.float32)}
        )
        (at_one,) = fused.run(
            None, {**inputs, "encoder_hidden_states": ehs, "ip_adapter_scale": np.ones((1, 16), np.float32)}
        )
        np.testing.assert_allclose(at_zero, plain.numpy(), rtol=0, atol=ATOL)
        self.assertGreater(float(np.abs(at_one - at_zero).max()), 0.05, "the image tokens should change the output")

    def test_residual_unet_matches_diffusers(self) -> None:
        from streamdiffusion_export.ip_adapter_export import tokens_as_image_embeds

        session = _session(self.folder / "plain" / "model.onnx")
        generator = torch.Generator().manual_seed(9)
        sample = torch.randn(2, 4, 8, 8, generator=generator)
        timestep = torch.tensor([999.0, 499.0])
        text = torch.randn(2, 77, 32, generator=generator)
        tokens = torch.randn(2, 4, 32, generator=generator)
        shapes = [value.shape for value in session.get_inputs()[4:]]
        sizes = {"height": 8, "width": 8}

        def size(dim):
            if isinstance(dim, int):
                return dim
            base, _, factor = dim.partition("_div_")
            return 2 if base == "batch" else sizes[base] // int(factor or 1)

        residuals = [torch.randn(*[size(dim) for dim in shape], generator=generator) * 0.3 for shape in shapes]
        from streamdiffusion_export.ip_adapter import set_ip_scales

        set_ip_scales(self.unet, [0.6] * 16)
        with torch.no_grad(), tokens_as_image_embeds(self.unet):
            expected = self.unet(
                sample, timestep, text,
                added_cond_kwargs={"image_embeds": [tokens[:, None]]},
                down_block_additional_residuals=tuple(residuals[:-1]),
                mid_block_additional_residual=residuals[-1],
            ).sample.numpy()  # fmt: skip
        names = [value.name for value in session.get_inputs()]
        feeds = {
            "sample": sample.numpy(),
            "timestep": timestep.numpy(),
            "encoder_hidden_states": torch.cat([text, tokens], dim=1).numpy(),
            "ip_adapter_scale": np.full((2, 16), 0.6, np.float32),
            **{name: residual.numpy() for name, residual in zip(names[4:], residuals)},
        }
        (actual,) = session.run(None, feeds)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


@unittest.skipIf(MISSING, f"needs torch, transformers, diffusers, onnx, onnxruntime, safetensors ({MISSING})")
class IPAdapterCommandTest(unittest.TestCase):
    def test_random_init_with_an_adapter_and_the_image_side_of_another(self) -> None:
        from streamdiffusion_export.cli import main

        with tempfile.TemporaryDirectory(prefix="sdx-ip-adapter-cli-") as scratch:
            folder = Path(scratch)
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                status = main(
                    [
                        "random-init", "--arch", "micro-sd-turbo", "--vae", "taesd", "--device", "cpu",
                        "--compact-graph", "--ip-adapter-random", "regular", "--ip-adapter-seed", "30",
                        "--out", str(folder / "model"), "--save-ip-adapter", str(folder / "regular"),
                    ]
                )  # fmt: skip
                self.assertEqual(status, 0)
                status = main(
                    [
                        "ip-adapter-image", "--arch", "micro-sd-turbo", "--device", "cpu", "--ip-adapter-random",
                        "plus", "--ip-adapter-seed", "40", "--ip-adapter-attention-from", str(folder / "regular"),
                        "--image-encoder", str(folder / "regular" / "image_encoder"), "--out", str(folder / "plus"),
                    ]
                )  # fmt: skip
                self.assertEqual(status, 0)
            model = folder / "model"
            info = json.loads((model / "unet" / "ip_adapter.json").read_text())
            projection = json.loads((model / "image_projection" / "config.json").read_text())
            plus = json.loads((folder / "plus" / "image_projection" / "config.json").read_text())
            index = json.loads((model / "model_index.json").read_text())
            self.assertEqual(info["layers"], SD_LAYERS)
            self.assertEqual(
                {key: info[key] for key in ("scale_input", "image_tokens", "kind", "source")},
                {
                    "scale_input": "ip_adapter_scale",
                    "image_tokens": 4,
                    "kind": "regular",
                    "source": "random-init seed 30",
                },
            )
            self.assertEqual(
                projection,
                {"kind": "regular", "image_tokens": 4, "input": "image_embeds", "cross_attention_dim": 32,
                 "attention_id": info["attention_id"], "source": "random-init seed 30"},
            )  # fmt: skip
            self.assertEqual(plus["attention_id"], info["attention_id"])
            self.assertEqual(
                (plus["kind"], plus["image_tokens"], plus["input"]), ("plus", 16, "penultimate_hidden_states")
            )
            self.assertEqual(sorted(path.name for path in (folder / "plus").iterdir()), ["image_projection"])
            self.assertEqual(
                index["streamdiffusion_export"]["ip_adapter"],
                {"kind": "regular", "image_tokens": 4, "source": "random-init seed 30"},
            )
            self.assertEqual(index["image_encoder"], ["transformers", "CLIPVisionModelWithProjection"])
            preprocessor = json.loads((model / "feature_extractor" / "preprocessor_config.json").read_text())
            self.assertEqual(preprocessor["size"], {"shortest_edge": 32})
            self.assertEqual(preprocessor["crop_size"], {"height": 32, "width": 32})
            self.assertEqual(preprocessor["resample"], 3)
            encoder = _session(model / "image_encoder" / "model.onnx")
            self.assertEqual(
                [(value.name, value.shape) for value in encoder.get_outputs()],
                [("image_embeds", ["batch", 32]), ("penultimate_hidden_states", ["batch", 17, 32])],
            )
            # The plus tokens run on the regular UNet.
            (embeds, penultimate) = encoder.run(None, {"pixel_values": np.zeros((1, 3, 32, 32), np.float32)})
            (tokens,) = _session(folder / "plus" / "image_projection" / "model.onnx").run(
                None, {"image_embeds": penultimate}
            )
            self.assertEqual(tokens.shape, (1, 16, 32))
            (out,) = _session(model / "unet" / "model.onnx").run(
                None,
                {
                    "sample": np.ones((1, 4, 8, 8), np.float32),
                    "timestep": np.array([10.0], np.float32),
                    "encoder_hidden_states": np.concatenate([np.zeros((1, 77, 32), np.float32), tokens], axis=1),
                    "ip_adapter_scale": np.ones((1, 16), np.float32),
                },
            )
            self.assertTrue(np.isfinite(out).all())


if __name__ == "__main__":
    unittest.main()
