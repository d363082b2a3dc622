"""Load a tokenizer as a transformers fast tokenizer: the shipped BPE, or a real Gemma model folder's own.

transformers is imported inside :func:`load_tokenizer` so importing this module stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SHIPPED_TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"


class TokenizerError(ValueError):
    """A tokenizer path that does not hold a loadable `tokenizer.json`."""


def load_tokenizer(path: str | os.PathLike[str] | None = None) -> Any:
    """A ``PreTrainedTokenizerFast`` from a folder holding `tokenizer.json` (default: the shipped one).

    A folder (ours, or a Gemma model folder) loads with ``PreTrainedTokenizerFast.from_pretrained``, so its
    `tokenizer_config.json` special tokens and chat template come along while the `tokenizer.json` pipeline
    is used exactly as written. (``AutoTokenizer`` would pick the folder's class, e.g. ``GemmaTokenizer``,
    which in transformers 5 rebuilds its own pre-tokenizer instead of the file's.) A bare `tokenizer.json`
    file, or a folder with only that file, loads directly. Never touches the network.
    """
    from transformers import PreTrainedTokenizerFast

    target = Path(path) if path is not None else SHIPPED_TOKENIZER_DIR
    if target.is_file():
        if target.name != "tokenizer.json":
            raise TokenizerError(f"tokenizer path {target} is a file but not a tokenizer.json")
        return PreTrainedTokenizerFast(tokenizer_file=str(target))
    if not target.is_dir():
        raise TokenizerError(f"tokenizer path {target} does not exist")
    if not (target / "tokenizer.json").is_file():
        raise TokenizerError(f"tokenizer folder {target} has no tokenizer.json")
    if not (target / "tokenizer_config.json").is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(target / "tokenizer.json"))
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(target), local_files_only=True)
    except (OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise TokenizerError(f"tokenizer folder {target} cannot be loaded: {message}") from None
