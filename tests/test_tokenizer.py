"""The shipped byte-level BPE tokenizer: reproducible, round-trips any text, tags are single tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tunix_rt.training import render
from tunix_rt.training.tokenizer import (
    SHIPPED_TOKENIZER_DIR,
    VOCAB_SIZE,
    TokenizerError,
    load_tokenizer,
    render_files,
)

pytestmark = pytest.mark.kernel  # needs transformers + tokenizers


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_rebuild_gives_identical_bytes() -> None:
    for name, data in render_files().items():
        assert (SHIPPED_TOKENIZER_DIR / name).read_bytes() == data, name


def test_is_a_fast_tokenizer_with_gemma_style_special_ids(tok) -> None:
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == VOCAB_SIZE
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(list(render.SPECIAL_TOKENS)) == list(range(10))


@pytest.mark.parametrize("tag", render.SPECIAL_TOKENS)
def test_tags_are_single_tokens(tok, tag: str) -> None:
    ids = tok(f"x{tag}y", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids(tag) in ids
    assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("text", [
    "What is 12 * 7?",
    "How many 🍎 are in 🍎🐟🍎? 👩‍👩‍👧 ✨",
    "Reverse 'smørbrød', 'łódź', 'ñandú' and 'cafe\u0301' — “quotes” · ½ · 日本語 · Ελληνικά",
    "tabs\tand\nnewlines  and  spaces ",
    "symbols @#$%&*!?^~+= <not-a-tag> </answer",
])
def test_round_trip(tok, text: str) -> None:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_bos_is_added_and_sft_text_round_trips(tok) -> None:
    rec = {"prompt": "How many 🌸 are in 🌸🌸?", "final_answer": "2",
           "steps": [{"i": 0, "type": "compute", "content": "There are 2."}]}
    ids = tok(render.sft_text(rec))["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids[1:]) == render.sft_text(rec)
    # Prompt and completion tokenized apart concatenate to the whole (the trainer's mask relies on it).
    prompt, completion = render.sft_split(rec)
    parts = tok(prompt)["input_ids"] + tok(completion, add_special_tokens=False)["input_ids"]
    assert tok.decode(parts, skip_special_tokens=False) == "<bos>" + render.sft_text(rec)


def test_chat_template_matches_the_rendered_prompt(tok) -> None:
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<bos>" + render.prompt_text("What is 2 + 3?")
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids) == tok(render.prompt_text("What is 2 + 3?"))["input_ids"]
    turn = tok.apply_chat_template(messages + [{"role": "assistant", "content": "5"}], tokenize=False)
    assert turn.endswith("<start_of_turn>model\n5<end_of_turn>\n")


def test_config_is_portable() -> None:
    config = json.loads((SHIPPED_TOKENIZER_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["additional_special_tokens"] == list(render.ADDITIONAL_SPECIAL_TOKENS)
    assert "chat_template" in config


def test_a_model_folder_tokenizer_loads_the_same_way(tmp_path: Path) -> None:
    # A Gemma-style model folder: weights next to tokenizer.json (+ config); only the tokenizer is read here.
    shutil.copy(SHIPPED_TOKENIZER_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    bare = load_tokenizer(tmp_path)
    assert bare("hi")["input_ids"] == load_tokenizer()("hi")["input_ids"]
    assert load_tokenizer(tmp_path / "tokenizer.json")("hi")["input_ids"] == bare("hi")["input_ids"]


@pytest.mark.parametrize("make", ["missing", "empty_dir", "other_file"])
def test_bad_paths_are_one_line_errors(tmp_path: Path, make: str) -> None:
    target = tmp_path / "tok"
    if make == "empty_dir":
        target.mkdir()
    elif make == "other_file":
        target = tmp_path / "tokenizer.model"
        target.write_bytes(b"x")
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(target)
    assert str(target) in str(info.value) and "\n" not in str(info.value)


def test_model_folder_class_does_not_change_the_pipeline(tmp_path: Path) -> None:
    # A Gemma folder names its own class; the tokenizer.json must still be used as written (byte-level here).
    shutil.copy(SHIPPED_TOKENIZER_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    config = {"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
              "pad_token": "<pad>", "unk_token": "<unk>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = load_tokenizer(tmp_path)
    ids = tok("hi 🍎")["input_ids"]
    assert ids == load_tokenizer()("hi 🍎")["input_ids"] and tok.decode(ids[1:]) == "hi 🍎"
    assert tok.pad_token_id == 0 and tok.bos_token == "<bos>"


@pytest.mark.parametrize("key", ["dev-reasoning-v2", "dev-reasoning-v2-x10"])
def test_every_trace_fits_the_tiny_profiles_sequence_length(tok, key: str) -> None:
    # sft_tiny trains at seq_len 128 (learning.md: L near the longest trace keeps steps fast); <bos> included.
    from tunix_rt.training.dataset_registry import load_dataset

    lengths = [len(ids) for ids in tok([render.sft_text(r) for r in load_dataset(key).records])["input_ids"]]
    assert max(lengths) <= 128
