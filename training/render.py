"""How a trace becomes model text: Gemma turns around a `<reasoning>…</reasoning><answer>…</answer>` target.

The prompt part (user turn plus the opening of the model turn) is what the model is given; the completion
(reasoning steps, final answer, end of turn) is what it learns to write. The trainer masks the loss to the
completion, so the two halves are returned separately by :func:`sft_split`. No `<bos>` here: the tokenizer's
post-processor adds it (and Tunix's Sampler adds it at generation time), so both paths agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
REASONING_OPEN = "<reasoning>"
REASONING_CLOSE = "</reasoning>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
PAD = "<pad>"
EOS = "<eos>"
BOS = "<bos>"
UNK = "<unk>"

# Order matters: ids 0..9 in the shipped tokenizer (pad=0, eos=1, bos=2, unk=3 like Gemma).
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD,
    EOS,
    BOS,
    UNK,
    START_OF_TURN,
    END_OF_TURN,
    REASONING_OPEN,
    REASONING_CLOSE,
    ANSWER_OPEN,
    ANSWER_CLOSE,
)
# The tokens beyond pad/eos/bos/unk (transformers' additional_special_tokens).
ADDITIONAL_SPECIAL_TOKENS: tuple[str, ...] = SPECIAL_TOKENS[4:]


def prompt_text(prompt: str) -> str:
    """The user turn and the opening of the model turn: what the model sees before it answers."""
    return f"{START_OF_TURN}user\n{prompt}{END_OF_TURN}\n{START_OF_TURN}model\n"


def _step_contents(steps: Any) -> list[str]:
    out = []
    for step in steps:
        # Records carry {"i","type","content"}; plain strings are accepted for hand-made examples.
        out.append(step["content"] if isinstance(step, Mapping) else str(step))
    return out


def reasoning_text(record: Mapping[str, Any]) -> str:
    """The `<reasoning>…</reasoning><answer>…</answer>` body without the end-of-turn marker."""
    steps = "\n".join(_step_contents(record["steps"]))
    return f"{REASONING_OPEN}{steps}{REASONING_CLOSE}{ANSWER_OPEN}{record['final_answer']}{ANSWER_CLOSE}"


def completion_text(record: Mapping[str, Any]) -> str:
    """The model turn's target: reasoning steps joined by newlines, the final answer, then end of turn."""
    return reasoning_text(record) + END_OF_TURN


def sft_split(record: Mapping[str, Any]) -> tuple[str, str]:
    """(prompt part, completion part) of one trace; the loss goes on the completion only."""
    return prompt_text(record["prompt"]), completion_text(record)


def sft_text(record: Mapping[str, Any]) -> str:
    """The whole SFT text of one trace (prompt part + completion part)."""
    prompt, completion = sft_split(record)
    return prompt + completion
