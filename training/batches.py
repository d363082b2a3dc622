"""Traces → fixed-length token arrays with a completion-only loss mask → Tunix ``TrainingInput`` batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .render import completion_text, prompt_text


class DataFitError(ValueError):
    """Data that does not fit the config: a trace over ``data.seq_len``, or fewer traces than a batch."""


@dataclass(frozen=True)
class TokenizedData:
    """All examples right-padded to one length, so the train step compiles once."""

    tokens: np.ndarray  # int32 [N, L], padded with the tokenizer's pad id
    mask: np.ndarray  # int32 [N, L], 1 on the model turn (completion) only: the loss mask
    lengths: np.ndarray  # int32 [N], real (non-pad) tokens per example
    pad_id: int

    @property
    def count(self) -> int:
        return int(self.tokens.shape[0])


def tokenize_records(records: Sequence[Mapping[str, Any]], tokenizer: Any, seq_len: int) -> TokenizedData:
    """Tokenize prompt (with the tokenizer's ``<bos>``) and completion apart; mask = completion tokens."""
    prompts = tokenizer([prompt_text(r["prompt"]) for r in records])["input_ids"]
    completions = tokenizer([completion_text(r) for r in records], add_special_tokens=False)["input_ids"]
    pad_id = int(tokenizer.pad_token_id)
    n = len(records)
    tokens = np.full((n, seq_len), pad_id, dtype=np.int32)
    mask = np.zeros((n, seq_len), dtype=np.int32)
    lengths = np.zeros((n,), dtype=np.int32)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        total = len(p) + len(c)
        if total > seq_len:
            raise DataFitError(
                f"data.seq_len: trace {i} ({records[i]['prompt'][:40]!r}…) is {total} tokens > {seq_len}"
            )
        tokens[i, :total] = p + c
        mask[i, len(p):total] = 1
        lengths[i] = total
    return TokenizedData(tokens=tokens, mask=mask, lengths=lengths, pad_id=pad_id)


def batch_order(count: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Row indices of every step's batch, [steps, batch_size]: shuffled epochs, incomplete tail dropped."""
    if count < batch_size:
        raise DataFitError(f"training.batch_size: {batch_size} > the {count} training examples")
    per_epoch = count // batch_size
    rng = np.random.default_rng(seed)
    epochs = -(-steps // per_epoch)
    order = [rng.permutation(count)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
             for _ in range(epochs)]
    return np.concatenate(order)[:steps]


def step_tokens(data: TokenizedData, order: np.ndarray) -> np.ndarray:
    """Real (non-pad) tokens processed at each step, [steps]."""
    return data.lengths[order].sum(axis=1).astype(np.int64)


def training_inputs(data: TokenizedData, order: np.ndarray) -> Iterator[Any]:
    """Yield one ``peft_trainer.TrainingInput`` per step, in ``order``."""
    from tunix.sft import peft_trainer

    for rows in order:
        yield peft_trainer.TrainingInput(input_tokens=data.tokens[rows], input_mask=data.mask[rows])


def model_inputs_fn(pad_id: int) -> Any:
    """The trainer's ``gen_model_input_fn``: positions and causal attention mask from the padding."""
    from tunix.sft import utils as sft_utils

    def gen(x: Any) -> dict[str, Any]:
        not_pad = x.input_tokens != pad_id
        return {
            "input_tokens": x.input_tokens,
            "input_mask": x.input_mask,
            "positions": sft_utils.build_positions_from_mask(not_pad),
            "attention_mask": sft_utils.make_causal_attn_mask(not_pad),
        }

    return gen
