"""SFT text rendering: Gemma turns around the reasoning/answer target."""

from __future__ import annotations

from tunix_rt.training import render
from tunix_rt.training.dataset_registry import load_dataset

RECORD = {
    "prompt": "What is 2 + 3?",
    "final_answer": "5",
    "steps": [{"i": 0, "type": "given", "content": "Start with 2."},
              {"i": 1, "type": "compute", "content": "2 + 3 = 5."}],
}


def test_prompt_text_is_a_gemma_user_turn_then_the_model_turn_opening() -> None:
    assert render.prompt_text("hi") == "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"


def test_completion_has_steps_and_answer_and_ends_the_turn() -> None:
    assert render.completion_text(RECORD) == (
        "<reasoning>Start with 2.\n2 + 3 = 5.</reasoning><answer>5</answer><end_of_turn>"
    )


def test_sft_text_is_prompt_plus_completion_and_split_matches() -> None:
    prompt, completion = render.sft_split(RECORD)
    assert prompt == render.prompt_text(RECORD["prompt"])
    assert completion == render.completion_text(RECORD)
    assert render.sft_text(RECORD) == prompt + completion
    assert not render.sft_text(RECORD).startswith(render.BOS)  # the tokenizer adds <bos>


def test_plain_string_steps_are_accepted() -> None:
    rec = dict(RECORD, steps=["a", "b"])
    assert render.completion_text(rec).startswith("<reasoning>a\nb</reasoning>")


def test_special_tokens_are_in_gemma_order() -> None:
    assert render.SPECIAL_TOKENS[:4] == ("<pad>", "<eos>", "<bos>", "<unk>")
    assert render.ADDITIONAL_SPECIAL_TOKENS == (
        "<start_of_turn>", "<end_of_turn>", "<reasoning>", "</reasoning>", "<answer>", "</answer>")


def test_every_dataset_record_renders_well_formed() -> None:
    from tunix_rt.training.scoring import parse_output

    for rec in load_dataset().records:
        parsed = parse_output(render.completion_text(rec))
        assert parsed.well_formed and parsed.answer == rec["final_answer"], rec["prompt"]
