# Import stub for the test harness: `safetensors` has no Debian 12 package and
# PyPI is unreachable here. ComfyUI imports it at startup (comfy/utils.py,
# nodes.py); loading/saving .safetensors files is not supported by this stub.


def safe_open(*args, **kwargs):
    raise NotImplementedError("safetensors stub (ComfyUI test harness): safe_open unavailable")
