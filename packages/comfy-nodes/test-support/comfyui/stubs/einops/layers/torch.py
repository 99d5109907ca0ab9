# Import stub for the test harness: ComfyUI model code does
# `from einops.layers.torch import Rearrange`; only instantiating it fails.


class Rearrange:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("einops stub (ComfyUI test harness): Rearrange not available")
