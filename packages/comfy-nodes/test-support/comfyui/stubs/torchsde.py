# Import stub for the test harness: `torchsde` has no Debian 12 package and PyPI
# is unreachable here. comfy/k_diffusion/sampling.py imports it at module level
# for the SDE samplers' Brownian tree; using those samplers fails.


class BrownianTree:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("torchsde stub (ComfyUI test harness): not available")
