"""Tokenizers: load one as a transformers fast tokenizer (the shipped BPE, or a real Gemma model folder's own),
and build the shipped one (``training/build_tokenizer.py`` writes or checks ``tokenizer/``).

The shipped tokenizer is a byte-level BPE (vocab 512) trained on the rendered dev-reasoning-v2 texts.
Byte-level means any UTF-8 text (emoji, accents) round-trips; the turn and tag markers are single special
tokens with fixed ids (pad 0, eos 1, bos 2, unk 3, then the turn and tag markers). A `<bos>` post-processor
makes `tok(text)` start with `<bos>` like Gemma's tokenizer. `tokenizer_config.json` is written by hand so
that transformers 4.x and 5.x both load the folder with `AutoTokenizer` (see research/training.md §3).

transformers and tokenizers are imported inside the functions so importing this module stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .render import ADDITIONAL_SPECIAL_TOKENS, BOS, EOS, PAD, SPECIAL_TOKENS, UNK, sft_text

SHIPPED_TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
VOCAB_SIZE = 512

# Gemma-style chat template: `<bos>`, then `<start_of_turn>{user|model}\n…<end_of_turn>\n` per message;
# a system message is folded into the first user turn as Gemma 3's template does.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] "
    "+ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


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


def training_texts(dataset_key: str | None = None) -> list[str]:
    """The full SFT texts the shipped tokenizer learns its merges from (default: dev-reasoning-v2)."""
    from .dataset_registry import DEFAULT_DATASET, load_dataset

    return [sft_text(rec) for rec in load_dataset(dataset_key or DEFAULT_DATASET).records]


def build_tokenizer_json(texts: list[str], vocab_size: int = VOCAB_SIZE) -> bytes:
    """Train the BPE and return its `tokenizer.json` bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return (tok.to_str(pretty=True) + "\n").encode("utf-8")


def tokenizer_config() -> dict[str, Any]:
    """The portable tokenizer_config.json (hand-written: v5's save_pretrained output does not load in 4.x)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "additional_special_tokens": list(ADDITIONAL_SPECIAL_TOKENS),
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1024,
        "padding_side": "right",
        "chat_template": CHAT_TEMPLATE,
    }


def render_files(dataset_key: str | None = None) -> dict[str, bytes]:
    """The exact bytes of both shipped tokenizer files."""
    from .report import canonical_json

    return {
        "tokenizer.json": build_tokenizer_json(training_texts(dataset_key)),
        "tokenizer_config.json": canonical_json(tokenizer_config()).encode("utf-8"),
    }
