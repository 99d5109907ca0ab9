"""Makes a small CLIP-format BPE tokenizer (vocab.json + merges.txt) without downloading anything.

Real CLIP vocab files cannot be fetched on the hosts this tool runs on, so the tiny test models
use a tokenizer the tool learns itself, in exactly CLIP's file format:

* vocab.json: the 256 byte-level characters of ``bytes_to_unicode``, the same 256 with a
  ``</w>`` end-of-word suffix, one entry per learned merge, then ``<|startoftext|>`` and
  ``<|endoftext|>`` (the same order CLIP's own vocabulary is built in);
* merges.txt: ``#version: 0.2`` followed by one merge per line, in rank order.

Merges are learned by a deterministic byte-pair encoding over ``PROMPT_CORPUS`` with CLIP's
pre-tokenisation (whitespace clean-up, lowercase, CLIP's split regex, last character of every
word suffixed with ``</w>``). Ties are broken by the lexicographically smallest pair, so the
result is the same on every machine. The files are then loaded and re-saved through
transformers' ``CLIPTokenizer`` so tokenizer_config.json and special_tokens_map.json are exactly
what transformers writes for diffusers users.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import regex

from .configs import MAX_TOKEN_LENGTH
from .prompt_corpus import PROMPT_CORPUS

#: CLIP's pre-tokenisation pattern (without the special-token alternatives).
CLIP_SPLIT_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
END_OF_WORD = "</w>"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MERGES_HEADER = "#version: 0.2"

#: Default number of merges; vocab size = 512 + merges + 2.
DEFAULT_NUM_MERGES = 480


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the others are moved to code points from 256 up,
    in byte order. The dict is ordered the way CLIP lists its first 256 vocabulary entries.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes)}


def pretokenize(text: str) -> list[str]:
    """Splits text into CLIP words: whitespace collapsed, lowercased, CLIP's regex."""
    cleaned = regex.sub(r"\s+", " ", text).strip().lower()
    return CLIP_SPLIT_PATTERN.findall(cleaned)


def _word_symbols(word: str, byte_map: dict[int, str]) -> tuple[str, ...]:
    chars = [byte_map[byte] for byte in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + END_OF_WORD,)


def learn_merges(corpus: str = PROMPT_CORPUS, num_merges: int = DEFAULT_NUM_MERGES) -> list[tuple[str, str]]:
    """Learns up to ``num_merges`` BPE merges from the corpus, deterministically.

    A merge must occur at least twice and must create a symbol that is not in the vocabulary yet
    (two different pairs can spell the same string; CLIP's vocab.json cannot hold it twice).
    """
    byte_map = bytes_to_unicode()
    word_counts = collections.Counter(pretokenize(corpus))
    words: dict[tuple[str, ...], int] = collections.Counter()
    for word, count in word_counts.items():
        words[_word_symbols(word, byte_map)] += count

    known = set(byte_map.values()) | {char + END_OF_WORD for char in byte_map.values()}
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pair_counts: dict[tuple[str, str], int] = collections.Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] += count
        candidates = [
            (-count, pair) for pair, count in pair_counts.items() if count >= 2 and "".join(pair) not in known
        ]
        if not candidates:
            break
        _, best = min(candidates)
        merges.append(best)
        merged = "".join(best)
        known.add(merged)
        words = _apply_merge(words, best, merged)
    return merges


def _apply_merge(words: dict[tuple[str, ...], int], pair: tuple[str, str], merged: str) -> dict[tuple[str, ...], int]:
    result: dict[tuple[str, ...], int] = collections.Counter()
    for symbols, count in words.items():
        out: list[str] = []
        index = 0
        while index < len(symbols):
            if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == pair:
                out.append(merged)
                index += 2
            else:
                out.append(symbols[index])
                index += 1
        result[tuple(out)] += count
    return result


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary layout: bytes, bytes + </w>, merges, then the two special tokens."""
    base = list(bytes_to_unicode().values())
    tokens = base + [char + END_OF_WORD for char in base] + ["".join(pair) for pair in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    if len(set(tokens)) != len(tokens):
        raise AssertionError("duplicate token in the tool-made vocabulary")
    return {token: index for index, token in enumerate(tokens)}


def write_vocab_files(directory: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """Writes vocab.json and merges.txt in the layout of CLIP's (and transformers') files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(
        json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    lines = [MERGES_HEADER] + [f"{left} {right}" for left, right in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_clip_tokenizer(out_dir: Path, pad_token: str, num_merges: int = DEFAULT_NUM_MERGES) -> dict[str, int]:
    """Learns the vocabulary and writes a CLIPTokenizer folder; returns the special token ids.

    The folder holds vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json,
    like the ``tokenizer/`` folder of a diffusers Stable Diffusion checkpoint (no tokenizer.json).
    The returned dict has ``vocab_size``, ``bos_token_id``, ``eos_token_id`` and ``pad_token_id``.
    """
    merges = learn_merges(num_merges=num_merges)
    vocab = build_vocab(merges)
    if pad_token not in vocab:
        raise ValueError(f"pad token {pad_token!r} is not in the vocabulary")
    write_vocab_files(out_dir, vocab, merges)
    write_tokenizer_configs(out_dir, vocab, pad_token)
    verify_with_transformers(out_dir, pad_token)
    return {
        "vocab_size": len(vocab),
        "bos_token_id": vocab[BOS_TOKEN],
        "eos_token_id": vocab[EOS_TOKEN],
        "pad_token_id": vocab[pad_token],
    }


def _added_token(content: str, normalized: bool = True) -> dict[str, object]:
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False}


def write_tokenizer_configs(out_dir: Path, vocab: dict[str, int], pad_token: str) -> None:
    """Writes tokenizer_config.json and special_tokens_map.json as Stable Diffusion checkpoints have them.

    transformers 5 no longer writes special_tokens_map.json (and adds keys such as ``backend`` and
    ``is_local``), so the files are written here, deterministically, in the two shapes found in
    the checkpoints users download: SD 1.5's (transformers 4.2x: special tokens as ``AddedToken``
    objects, padding with ``<|endoftext|>``) and SD 2.1 / SD-Turbo's (transformers 4.3x:
    ``added_tokens_decoder``, padding with ``!``). Both load with transformers 4.x and 5.x.
    """
    if pad_token == EOS_TOKEN:

        def legacy(content: str) -> dict[str, object]:
            return {"__type": "AddedToken", **_added_token(content)}

        config: dict[str, object] = {
            "add_prefix_space": False,
            "bos_token": legacy(BOS_TOKEN),
            "do_lower_case": True,
            "eos_token": legacy(EOS_TOKEN),
            "errors": "replace",
            "model_max_length": MAX_TOKEN_LENGTH,
            "pad_token": EOS_TOKEN,
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": legacy(EOS_TOKEN),
        }
        special: dict[str, object] = {
            "bos_token": _added_token(BOS_TOKEN),
            "eos_token": _added_token(EOS_TOKEN),
            "pad_token": EOS_TOKEN,
            "unk_token": _added_token(EOS_TOKEN),
        }
    else:
        decoder = {
            str(vocab[pad_token]): {**_added_token(pad_token, normalized=False), "special": True},
            str(vocab[BOS_TOKEN]): {**_added_token(BOS_TOKEN), "special": True},
            str(vocab[EOS_TOKEN]): {**_added_token(EOS_TOKEN), "special": True},
        }
        config = {
            "add_prefix_space": False,
            "added_tokens_decoder": decoder,
            "bos_token": BOS_TOKEN,
            "clean_up_tokenization_spaces": True,
            "do_lower_case": True,
            "eos_token": EOS_TOKEN,
            "errors": "replace",
            "model_max_length": MAX_TOKEN_LENGTH,
            "pad_token": pad_token,
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": EOS_TOKEN,
        }
        special = {
            "bos_token": _added_token(BOS_TOKEN),
            "eos_token": _added_token(EOS_TOKEN),
            "pad_token": _added_token(pad_token, normalized=False),
            "unk_token": _added_token(EOS_TOKEN),
        }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def verify_with_transformers(tokenizer_dir: Path, pad_token: str) -> None:
    """Loads the folder with transformers' CLIPTokenizer and checks it behaves like CLIP's.

    Raises AssertionError when the padding token, the length or the bos/eos framing is off.
    Skipped (with a note) when transformers is not installed.
    """
    try:
        from transformers import CLIPTokenizer
    except ImportError:
        print("note: transformers is not installed; tokenizer folder not verified")
        return
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=MAX_TOKEN_LENGTH, truncation=True)["input_ids"]
    expected_pad = vocab[pad_token]
    if len(ids) != MAX_TOKEN_LENGTH or ids[0] != vocab[BOS_TOKEN] or ids[-1] != expected_pad:
        raise AssertionError(f"tokenizer at {tokenizer_dir} does not frame/pad as expected: {ids}")
    if vocab[EOS_TOKEN] not in ids or tokenizer.model_max_length != MAX_TOKEN_LENGTH:
        raise AssertionError(f"tokenizer at {tokenizer_dir}: no eos or wrong model_max_length")
