"""``tokenizer-ids``: what transformers' CLIP tokenizer(s) make of a list of prompts.

For every tokenizer folder and prompt the golden file records

* ``ids``: ``tokenizer(prompt, padding="max_length", max_length=77, truncation=True)`` — what a
  Stable Diffusion pipeline feeds its text encoder;
* ``unpadded_ids``: ``tokenizer(prompt)`` — no padding and no truncation, with the bos/eos pair;
  longer than 77 for over-long prompts, so a runtime can test its own truncation.

transformers 4.x has a Python ``CLIPTokenizer`` and a Rust-backed ``CLIPTokenizerFast``; both are
run and recorded separately. In transformers 5 they are the same class, recorded once as
``CLIPTokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import TOOL_NAME, __version__
from .configs import MAX_TOKEN_LENGTH
from .tensor_json import dumps_json, write_text_maybe_gzip


def read_prompts(path: Path) -> list[str]:
    """Reads prompts.json: a list of strings, or an object with a "prompts" list."""
    data = json.loads(path.read_text(encoding="utf-8"))
    prompts = data["prompts"] if isinstance(data, dict) else data
    if not isinstance(prompts, list) or not all(isinstance(prompt, str) for prompt in prompts):
        raise ValueError(f"{path} must hold a list of strings (or {{'prompts': [...]}})")
    return prompts


def parse_tokenizer_argument(argument: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR``; the default name is the model folder's name for ``.../<model>/tokenizer``."""
    if "=" in argument:
        name, _, folder = argument.partition("=")
        return name, Path(folder)
    folder = Path(argument)
    resolved = folder.resolve()
    name = resolved.parent.name if resolved.name == "tokenizer" else resolved.name
    return name, folder


def _tokenizer_classes() -> dict[str, Any]:
    import transformers

    classes: dict[str, Any] = {"CLIPTokenizer": transformers.CLIPTokenizer}
    fast = getattr(transformers, "CLIPTokenizerFast", None)
    if fast is not None and fast is not transformers.CLIPTokenizer:
        classes["CLIPTokenizerFast"] = fast
    return classes


def tokenize_all(folder: Path, prompts: list[str]) -> dict[str, Any]:
    """Runs every CLIP tokenizer class on every prompt; returns the record for one folder."""
    record: dict[str, Any] = {}
    for class_name, tokenizer_class in _tokenizer_classes().items():
        tokenizer = tokenizer_class.from_pretrained(str(folder))
        results = []
        for prompt in prompts:
            padded = tokenizer(prompt, padding="max_length", max_length=MAX_TOKEN_LENGTH, truncation=True)
            unpadded = tokenizer(prompt)
            results.append(
                {"prompt": prompt, "ids": list(padded["input_ids"]), "unpadded_ids": list(unpadded["input_ids"])}
            )
        record[class_name] = {
            "pad_token": str(tokenizer.pad_token),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "model_max_length": tokenizer.model_max_length,
            "results": results,
        }
    return record


def make_tokenizer_ids(tokenizers: list[tuple[str, Path]], prompts_file: Path, out_file: Path) -> None:
    """Writes the golden token-id file for the given (name, folder) pairs."""
    import transformers

    prompts = read_prompts(prompts_file)
    golden: dict[str, Any] = {
        "tool": f"{TOOL_NAME} {__version__}",
        "transformers": transformers.__version__,
        "max_length": MAX_TOKEN_LENGTH,
        "call": "tokenizer(prompt, padding='max_length', max_length=77, truncation=True); unpadded: tokenizer(prompt)",
        "tokenizers": {},
    }
    for name, folder in tokenizers:
        record = tokenize_all(folder, prompts)
        golden["tokenizers"][name] = record
        classes = list(record)
        if len(classes) > 1:
            first, second = (record[class_name]["results"] for class_name in classes[:2])
            disagreements = sum(a["ids"] != b["ids"] for a, b in zip(first, second))
            print(f"  {name}: {classes[0]} and {classes[1]} disagree on {disagreements} of {len(prompts)} prompts")
        longest = max(len(result["unpadded_ids"]) for result in record[classes[0]]["results"])
        print(f"  {name}: {len(prompts)} prompts, longest unpadded {longest} ids")
    write_text_maybe_gzip(out_file, dumps_json(golden))
