# Import stub for the test harness: `tokenizers` has no Debian 12 package and
# PyPI is unreachable here. comfy/text_encoders/ace.py imports Tokenizer at
# module level; only actually loading a tokenizer fails.


class Tokenizer:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("tokenizers stub (ComfyUI test harness): not available")

    @classmethod
    def from_file(cls, *args, **kwargs):
        raise NotImplementedError("tokenizers stub (ComfyUI test harness): not available")
