# Import stub for the test harness: `einops` has no Debian 12 package and PyPI
# is unreachable here. ComfyUI imports rearrange/repeat at module level all
# over comfy/ (model code); nothing on the LoadImage/SaveImage path calls them.


def _unavailable(*args, **kwargs):
    raise NotImplementedError("einops stub (ComfyUI test harness): not available")


rearrange = repeat = reduce = einsum = _unavailable
