"""Tests of the pack's runtime module (plain Python, no torch, no ComfyUI).

The framing and input decoding run anywhere. The sidecar tests need a generated pack with its
sidecar installed: STREAMDIFFUSION_TEST_PACK=<pack dir> (the vitest suite in src/runtime-python.test.ts
generates one and runs this file), and STREAMDIFFUSION_TEST_MODEL=<tiny model folder>.
"""
import importlib.util
import io
import json
import os
import sys
import unittest

PACK = os.environ.get("STREAMDIFFUSION_TEST_PACK")
MODEL = os.environ.get("STREAMDIFFUSION_TEST_MODEL")
HERE = os.path.dirname(os.path.abspath(__file__))


def load_runtime():
    """The runtime module: the pack's copy when testing a pack, else the package's source."""
    path = os.path.join(PACK, "streamdiffusion_runtime.py") if PACK else os.path.join(HERE, "..", "streamdiffusion_runtime.py")
    spec = importlib.util.spec_from_file_location("streamdiffusion_runtime_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runtime = load_runtime()


class FramingTest(unittest.TestCase):
    def test_round_trip_of_json_and_binary(self):
        data = runtime.encode_message({"id": 3, "method": "sample", "params": {"frames": 2}}, bytes(range(10)))
        payload, binary = runtime.read_message(io.BytesIO(data))
        self.assertEqual(payload, {"id": 3, "method": "sample", "params": {"frames": 2}})
        self.assertEqual(binary, bytes(range(10)))

    def test_reads_across_short_reads(self):
        data = runtime.encode_message({"ok": True}, b"abc")

        class Trickle(io.RawIOBase):
            def __init__(self):
                self.left = data

            def read(self, n=-1):
                chunk, self.left = self.left[:1], self.left[1:]
                return chunk

        self.assertEqual(runtime.read_message(Trickle()), ({"ok": True}, b"abc"))

    def test_a_stream_that_ends_inside_a_message_is_an_error(self):
        data = runtime.encode_message({"ok": True}, b"abcdef")[:-2]
        with self.assertRaisesRegex(EOFError, "ended"):
            runtime.read_message(io.BytesIO(data))


class DecodeInputsTest(unittest.TestCase):
    # As the generated nodes carry them: sockets marked "socket", widgets by how their text is read.
    ENCODINGS = {"t_index_list": "int-list", "prompt_blending": "json", "preprocessor_model": "optional-text", "pipeline": "socket"}

    def test_turns_widget_text_into_schema_values(self):
        values = runtime.decode_inputs(
            {"t_index_list": "32, 45", "prompt_blending": '[["a cat", 1]]', "preprocessor_model": "", "guidance_scale": 1.5, "pipeline": object()},
            self.ENCODINGS,
        )
        self.assertEqual(values, {"t_index_list": [32, 45], "prompt_blending": [["a cat", 1]], "guidance_scale": 1.5})

    def test_empty_json_is_left_out(self):
        self.assertEqual(runtime.decode_inputs({"prompt_blending": "  "}, self.ENCODINGS), {})

    def test_bad_values_name_the_field_and_the_value(self):
        with self.assertRaisesRegex(ValueError, r"t_index_list: expected integers separated by commas \(like 32,45\), got '32;45'"):
            runtime.decode_inputs({"t_index_list": "32;45"}, self.ENCODINGS)
        with self.assertRaisesRegex(ValueError, r"prompt_blending: expected JSON, got '\[oops'"):
            runtime.decode_inputs({"prompt_blending": "[oops"}, self.ENCODINGS)


class ResolvePathsTest(unittest.TestCase):
    """Names in node widgets are looked up where ComfyUI users keep things."""

    def setUp(self):
        import tempfile

        self.root = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, self.root)
        self.models = os.path.join(self.root, "models", "streamdiffusion")
        self.input = os.path.join(self.root, "input")
        runtime._folders = (self.models, self.input)
        os.makedirs(os.path.join(self.models, "owner--canny"))
        self.addCleanup(setattr, runtime, "_folders", None)

    def test_outside_comfyui_names_are_paths_from_the_working_directory(self):
        runtime._folders = None
        self.assertEqual(runtime.comfy_folders(), (None, None))
        self.assertEqual(runtime.resolve_model("sd-turbo"), os.path.abspath("sd-turbo"))

    def test_model_names_are_found_in_models_streamdiffusion_and_hub_ids_as_owner_dash_dash_name(self):
        models = self.models
        self.assertEqual(runtime.resolve_model("sd-turbo"), os.path.join(models, "sd-turbo"))
        self.assertEqual(runtime.resolve_model("owner/canny"), os.path.join(models, "owner--canny"))
        self.assertEqual(runtime.resolve_model("owner/missing"), os.path.join(models, "owner/missing"))
        self.assertEqual(runtime.resolve_model("/abs/model"), "/abs/model")

    def test_wrapper_model_fields_and_style_images_are_resolved_and_nothing_else(self):
        resolved = runtime.resolve_paths({"model_id": "owner/canny", "ipadapter_model_path": "ip", "style_image": "style.png", "preprocessor": "canny", "conditioning_scale": 0.5})
        self.assertEqual(resolved, {
            "model_id": os.path.join(self.models, "owner--canny"),
            "ipadapter_model_path": os.path.join(self.models, "ip"),
            "style_image": os.path.join(self.input, "style.png"),
            "preprocessor": "canny",
            "conditioning_scale": 0.5,
        })


def schema_hash_of_pack():
    with open(os.path.join(PACK, "nodes.py"), encoding="utf-8") as file:
        for line in file:
            if line.startswith("SCHEMA_HASH = "):
                return json.loads(line.split("=", 1)[1].strip())
    raise AssertionError("no SCHEMA_HASH in nodes.py")


def frames(count, width, height):
    return bytes((x * 3 + y * 5 + k * 40) % 256 for k in range(count) for y in range(height) for x in range(width) for _ in range(3))


@unittest.skipUnless(PACK and MODEL, "needs STREAMDIFFUSION_TEST_PACK (a generated pack with its sidecar installed) and STREAMDIFFUSION_TEST_MODEL")
class SidecarTest(unittest.TestCase):
    def setUp(self):
        self.hash = schema_hash_of_pack()
        self.load_inputs = {"model": MODEL, "device": "cpu", "width": 64, "height": 64, "t_index_list": "20,40", "cfg_type": "none", "prompt": "a lighthouse"}

    def tearDown(self):
        runtime._close_sidecar()
        runtime._sidecar = None

    def test_loads_a_pipeline_and_transforms_a_batch_of_frames(self):
        (handle,) = runtime.run_node("load", self.load_inputs, {"t_index_list": "int-list"}, self.hash)
        self.assertEqual((handle["width"], handle["height"]), (64, 64))
        self.assertRegex(handle["handle"], r"^sd-[0-9a-f]{16}$")
        data = frames(3, 80, 48)
        result, out = runtime.sample_frames(self.hash, handle, data, 3, 48, 80)
        self.assertEqual((result["frames"], result["width"], result["height"]), (3, 64, 64))
        self.assertEqual(len(out), 3 * 64 * 64 * 3)
        # The same load request is the same pipeline (ComfyUI re-queues the same prompt every frame).
        (again,) = runtime.run_node("load", self.load_inputs, {"t_index_list": "int-list"}, self.hash)
        self.assertEqual(again["handle"], handle["handle"])

    def test_update_is_validated_by_the_sidecar_and_names_the_field(self):
        (handle,) = runtime.run_node("load", {"model": MODEL, "device": "cpu", "width": 64, "height": 64, "t_index_list": "20,40"}, {"t_index_list": "int-list"}, self.hash)
        (updated,) = runtime.run_node("update", {"pipeline": handle, "guidance_scale": 1.5, "prompt": "a boat"}, {"pipeline": "socket"}, self.hash)
        self.assertEqual(updated["hot"], {"guidance_scale": 1.5, "prompt": "a boat"})
        self.assertEqual(handle["hot"], {})
        with self.assertRaisesRegex(ValueError, r"update: guidance_scale: .*100.*\(got 500\)"):
            runtime.run_node("update", {"pipeline": handle, "guidance_scale": 500}, {"pipeline": "socket"}, self.hash)

    def test_bad_load_values_name_the_field(self):
        with self.assertRaisesRegex(ValueError, r"width.*\(got 65\)|width.*65"):
            runtime.run_node("load", {"model": MODEL, "device": "cpu", "width": 65, "height": 64}, {}, self.hash)
        with self.assertRaisesRegex(ValueError, r"nowhere"):
            runtime.run_node("load", {"model": "/nowhere/model", "device": "cpu", "width": 64, "height": 64}, {}, self.hash)
        # A LoRA from a LoRA node merges at load: a missing file fails the load node, not the first frame.
        missing = {**self.load_inputs, "lora": [{"path": "/nowhere/missing.safetensors", "scale": 1}]}
        with self.assertRaisesRegex(ValueError, r"/nowhere/missing\.safetensors"):
            runtime.run_node("load", missing, {"t_index_list": "int-list", "lora": "socket"}, self.hash)

    def test_build_engines_plans_for_the_pipeline_and_without_tensorrt_says_where_to_get_it(self):
        (handle,) = runtime.run_node("load", self.load_inputs, {"t_index_list": "int-list"}, self.hash)
        widgets = {"pipeline": handle, "resolution": "static", "min_resolution": 256, "max_resolution": 1024, "precision": "fp16", "refit": True, "dry_run": True, "trtexec": "", "store": os.path.join(PACK, "engine-store")}
        encodings = {"trtexec": "optional-text", "store": "optional-text", "pipeline": "socket"}
        (text,) = runtime.run_node("build_engines", widgets, encodings, self.hash)
        self.assertIn(f"plan for {MODEL} (static resolution, fp16)", text)
        # The pipeline's size and two-step batch (cfg none: 2 rows) reach the plan and the trtexec command.
        self.assertRegex(text, r"unet: .*batch 2–2 \(opt 2\)")
        self.assertRegex(text, r"--optShapes=sample:2x4x8x8,.* --fp16 .*--refit")
        # An update node's LoRAs go into refittable engines by refit: the plan ends the UNet with the refit command.
        kohya = os.path.join(os.path.dirname(os.path.dirname(MODEL)), "loras", "kohya.safetensors")
        with_lora = {**handle, "hot": {"loras": [{"path": kohya, "scale": 0.5}]}}
        (refit,) = runtime.run_node("build_engines", {**widgets, "pipeline": with_lora}, encodings, self.hash)
        self.assertRegex(refit, r"then refit with the LoRA set: python3 \S*/sidecar/python/refit_engine\.py ")
        (plain,) = runtime.run_node("build_engines", {**widgets, "pipeline": with_lora, "refit": False}, encodings, self.hash)
        self.assertIn("the 1 LoRA(s) are not in them", plain)
        with self.assertRaisesRegex(ValueError, r"trtexec \(TensorRT's engine builder\) was not found: /nowhere/trtexec is not an executable file.*https://docs\.nvidia\.com/deeplearning/tensorrt/"):
            runtime.run_node("build_engines", {**widgets, "dry_run": False, "trtexec": "/nowhere/trtexec"}, encodings, self.hash)
        with self.assertRaisesRegex(ValueError, r"build_engines: min_resolution: expected at most max_resolution \(1024\), got 2048"):
            runtime.run_node("build_engines", {**widgets, "min_resolution": 2048, "resolution": "dynamic"}, encodings, self.hash)
        self.assertFalse(os.path.exists(os.path.join(PACK, "engine-store")))

    def test_refuses_a_sidecar_of_another_schema(self):
        with self.assertRaisesRegex(runtime.SidecarError, r"generated for 0000000000000000"):
            runtime.Sidecar("0000000000000000")

    def test_after_a_crash_the_failing_call_says_so_and_the_next_one_works(self):
        os.environ["STREAMDIFFUSION_SIDECAR_TEST"] = "1"
        try:
            (handle,) = runtime.run_node("load", self.load_inputs, {"t_index_list": "int-list"}, self.hash)
            first = runtime.sidecar(self.hash)
            pid = first.process.pid
            with self.assertRaisesRegex(runtime.SidecarError, r"stopped during crash \(exit code 70"):
                runtime.call(self.hash, "crash", {})
            # The new sidecar does not know the handle (frames carry only its id)…
            params = {"handle": handle["handle"], "hot": {}, "frames": 1, "width": 64, "height": 64}
            with self.assertRaises(runtime.SidecarRequestError) as refused:
                runtime.call(self.hash, "sample", params, frames(1, 64, 64))
            self.assertEqual(refused.exception.name, "UnknownHandleError")
            # …so the next prompt's sampler sends the load request once, and the pipeline is made again.
            result, out = runtime.sample_frames(self.hash, handle, frames(1, 64, 64), 1, 64, 64)
            self.assertNotEqual(runtime._sidecar.process.pid, pid)
            self.assertEqual(len(out), 64 * 64 * 3)
        finally:
            del os.environ["STREAMDIFFUSION_SIDECAR_TEST"]

    def test_the_sidecar_exits_when_its_stdin_closes(self):
        current = runtime.sidecar(self.hash)
        current.close()
        self.assertEqual(current.process.returncode, 0)


if __name__ == "__main__":
    unittest.main()
