# Import stub for the test harness: `transformers` has no Debian 12 package and
# PyPI is unreachable here. ComfyUI's text-encoder modules import these
# tokenizer classes at module level; only actually loading a tokenizer fails.


class _UnavailableTokenizer:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"transformers stub (ComfyUI test harness): {type(self).__name__} not available")

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise NotImplementedError(f"transformers stub (ComfyUI test harness): {cls.__name__} not available")


class CLIPTokenizer(_UnavailableTokenizer): pass
class T5TokenizerFast(_UnavailableTokenizer): pass
class LlamaTokenizerFast(_UnavailableTokenizer): pass
class Qwen2Tokenizer(_UnavailableTokenizer): pass
class ByT5Tokenizer(_UnavailableTokenizer): pass
class BertTokenizer(_UnavailableTokenizer): pass
