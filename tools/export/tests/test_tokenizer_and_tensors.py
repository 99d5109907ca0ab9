"""Unit tests of the parts that need neither torch nor diffusers.

Run from the repository root: ``PYTHONPATH=tools/export python3 -m unittest discover tools/export/tests``.
"""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np

from streamdiffusion_export.tensor_json import (
    decode_tensor,
    dumps_json,
    encode_tensor,
    read_text_maybe_gzip,
    write_text_maybe_gzip,
)
from streamdiffusion_export.tokenizer_bpe import (
    BOS_TOKEN,
    END_OF_WORD,
    EOS_TOKEN,
    MERGES_HEADER,
    build_vocab,
    bytes_to_unicode,
    learn_merges,
    make_clip_tokenizer,
    pretokenize,
)


def reference_bpe_ids(text: str, vocab: dict[str, int], merges: list[tuple[str, str]]) -> list[int]:
    """Textbook CLIP BPE (lowest-rank pair first), independent of transformers and tokenizers."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    byte_map = bytes_to_unicode()
    ids = [vocab[BOS_TOKEN]]
    for word in pretokenize(text):
        chars = [byte_map[byte] for byte in word.encode("utf-8")]
        symbols = chars[:-1] + [chars[-1] + END_OF_WORD]
        while len(symbols) > 1:
            pairs = [
                (ranks.get(pair, float("inf")), index, pair) for index, pair in enumerate(zip(symbols, symbols[1:]))
            ]
            rank, index, pair = min(pairs)
            if rank == float("inf"):
                break
            symbols = symbols[:index] + ["".join(pair)] + symbols[index + 2 :]
        ids.extend(vocab[symbol] for symbol in symbols)
    ids.append(vocab[EOS_TOKEN])
    return ids


class BytesToUnicodeTest(unittest.TestCase):
    def test_is_clips_table(self) -> None:
        table = bytes_to_unicode()
        self.assertEqual(len(table), 256)
        self.assertEqual(len(set(table.values())), 256)
        self.assertEqual(next(iter(table.values())), "!")
        self.assertEqual(table[ord(" ")], "Ġ")
        self.assertEqual(table[ord("a")], "a")


class VocabularyTest(unittest.TestCase):
    def test_layout_and_determinism(self) -> None:
        merges = learn_merges()
        self.assertEqual(merges, learn_merges())
        self.assertEqual(len(merges), 480)
        vocab = build_vocab(merges)
        self.assertEqual(len(vocab), 994)
        self.assertEqual(vocab["!"], 0)
        self.assertEqual(vocab["!" + END_OF_WORD], 256)
        self.assertEqual(vocab["".join(merges[0])], 512)
        self.assertEqual((vocab[BOS_TOKEN], vocab[EOS_TOKEN]), (992, 993))

    def test_pretokenize_follows_clip(self) -> None:
        self.assertEqual(pretokenize("It's  a CAT!!\n42"), ["it", "'s", "a", "cat", "!!", "4", "2"])


class ToolMadeTokenizerTest(unittest.TestCase):
    def test_files_and_transformers_agree_with_reference_bpe(self) -> None:
        try:
            from transformers import CLIPTokenizer
        except ImportError:
            self.skipTest("transformers is not installed")
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            special = make_clip_tokenizer(folder, pad_token=EOS_TOKEN)
            self.assertEqual(
                sorted(path.name for path in folder.iterdir()),
                ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"],
            )
            merges_lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
            self.assertEqual(merges_lines[0], MERGES_HEADER)
            merges = [tuple(line.split(" ")) for line in merges_lines[1:]]
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            self.assertEqual(special["vocab_size"], len(vocab))
            tokenizer = CLIPTokenizer.from_pretrained(str(folder))
            for prompt in ("a photo of a cat", "A Portrait, dramatic lighting; 85mm lens", "cozy cabin's windows"):
                self.assertEqual(tokenizer(prompt)["input_ids"], reference_bpe_ids(prompt, vocab, merges), prompt)


class TensorJsonTest(unittest.TestCase):
    def test_round_trip(self) -> None:
        for array in (
            np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
            np.array([1.5, -2.25], dtype=np.float16),
            np.array([[1, 2, 3]], dtype=np.int32),
        ):
            encoded = encode_tensor(array)
            self.assertEqual(encoded["dims"], list(array.shape))
            decoded = decode_tensor(json.loads(json.dumps(encoded)))
            self.assertEqual(decoded.dtype, array.dtype)
            np.testing.assert_array_equal(decoded, array)

    def test_number_lists_stay_on_one_line(self) -> None:
        text = dumps_json({"ids": [1, 2, 3], "nested": {"dims": [2, 77]}, "names": ["a", "b"]})
        self.assertIn('"ids": [1, 2, 3]', text)
        self.assertIn('"dims": [2, 77]', text)
        self.assertEqual(json.loads(text)["names"], ["a", "b"])

    def test_gzip_files_are_reproducible_and_read_back(self) -> None:
        text = dumps_json({"ids": [1, 2, 3], "tensor": encode_tensor(np.arange(64, dtype=np.float32))})
        with tempfile.TemporaryDirectory() as folder:
            plain, packed, again = Path(folder) / "a.json", Path(folder) / "a.json.gz", Path(folder) / "b" / "a.json.gz"
            self.assertEqual(write_text_maybe_gzip(plain, text), len(text.encode("utf-8")))
            written = write_text_maybe_gzip(packed, text)
            write_text_maybe_gzip(again, text)
            data = packed.read_bytes()
            self.assertEqual(data[:2], b"\x1f\x8b")  # gzip, not plain JSON
            self.assertEqual(written, len(data))
            self.assertEqual(data, again.read_bytes())  # mtime 0: same text, same bytes
            self.assertEqual(plain.read_text(encoding="utf-8"), text)
            self.assertEqual(read_text_maybe_gzip(packed), text)
            self.assertEqual(read_text_maybe_gzip(plain), text)


if __name__ == "__main__":
    unittest.main()
