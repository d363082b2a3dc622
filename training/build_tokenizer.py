"""Train the shipped byte-level BPE tokenizer (vocab 512) on the rendered dev-reasoning-v2 texts.

    python training/build_tokenizer.py            # rewrite training/tokenizer/tokenizer{,_config}.json
    python training/build_tokenizer.py --check    # exit 1 unless a rebuild gives identical bytes

Byte-level means any UTF-8 text (emoji, accents) round-trips; the turn and tag markers are single special
tokens with fixed ids (pad 0, eos 1, bos 2, unk 3, then the turn and tag markers). A `<bos>` post-processor
makes `tok(text)` start with `<bos>` like Gemma's tokenizer. `tokenizer_config.json` is written by hand so
that transformers 4.x and 5.x both load the folder with `AutoTokenizer` (see research/training.md §3).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a plain script: import this folder as a package so the relative imports below resolve,
    # and drop the folder itself from sys.path so training/datasets.py cannot shadow a top-level module.
    import sys
    from pathlib import Path

    _pkg_dir = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _pkg_dir:
        sys.path.pop(0)
    sys.path.insert(0, str(_pkg_dir.parent))
    __package__ = _pkg_dir.name

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from .datasets import DEFAULT_DATASET, load_dataset  # noqa: E402
from .render import ADDITIONAL_SPECIAL_TOKENS, BOS, EOS, PAD, SPECIAL_TOKENS, UNK, sft_text  # noqa: E402

TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
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


def training_texts(dataset_key: str = DEFAULT_DATASET) -> list[str]:
    """The full SFT texts the tokenizer learns its merges from."""
    return [sft_text(rec) for rec in load_dataset(dataset_key).records]


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


def tokenizer_config() -> dict:
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


def render_files(dataset_key: str = DEFAULT_DATASET) -> dict[str, bytes]:
    """The exact bytes of both tokenizer files."""
    config = json.dumps(tokenizer_config(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return {
        "tokenizer.json": build_tokenizer_json(training_texts(dataset_key)),
        "tokenizer_config.json": config.encode("utf-8"),
    }


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TOKENIZER_DIR, help="tokenizer folder to write or check")
    parser.add_argument("--check", action="store_true", help="compare with --out; exit 1 on mismatch")
    args = parser.parse_args(argv)
    files = render_files()
    if args.check:
        for name, data in files.items():
            path = args.out / name
            if not path.is_file() or path.read_bytes() != data:
                print(f"build_tokenizer: {path} differs from a fresh build; run training/build_tokenizer.py",
                      file=sys.stderr)
                return 1
        print(f"build_tokenizer: {args.out} matches a fresh build")
        return 0
    for name, data in files.items():
        _write_atomic(args.out / name, data)
    print(f"build_tokenizer: wrote {', '.join(str(args.out / n) for n in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
