# Import stub for the test harness: package for `einops.layers.torch` (see einops/__init__.py).
