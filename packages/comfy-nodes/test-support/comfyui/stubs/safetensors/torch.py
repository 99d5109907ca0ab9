# Import stub for the test harness: ComfyUI does `import safetensors.torch` at
# startup (comfy/utils.py, nodes.py). Model/latent (de)serialisation is not
# available; calling these raises.


def _unavailable(*args, **kwargs):
    raise NotImplementedError("safetensors stub (ComfyUI test harness): not available")


load_file = save_file = load = save = _unavailable
