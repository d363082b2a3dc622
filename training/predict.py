"""Predictions: greedy generation on the eval prompts with Tunix's Sampler (fixed shapes: one compile)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import GenerationSection
from .render import END_OF_TURN, prompt_text


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def generate(model: Any, tokenizer: Any, tunix_config: Any, mesh: Any, prompts: Sequence[str],
             section: GenerationSection) -> list[str]:
    """Greedy completions (text after the prompt, end-of-turn excluded) for raw eval ``prompts``."""
    import jax
    from tunix.generate import sampler as sampler_lib

    texts = [prompt_text(p) for p in prompts]
    # The Sampler left-pads every prompt to max_prompt_length; raise it (to a multiple of 8) only if a prompt
    # is longer than the configured buffer, so the usual case compiles once for any eval set.
    longest = max(len(ids) for ids in tokenizer(texts)["input_ids"])
    max_prompt = max(section.max_prompt_length, _round_up(longest + 1, 8))
    cache = sampler_lib.CacheConfig(
        cache_size=max_prompt + section.max_new_tokens + 8,
        num_layers=tunix_config.num_layers,
        num_kv_heads=tunix_config.num_kv_heads,
        head_dim=tunix_config.head_dim,
    )
    sampler = sampler_lib.Sampler(model, tokenizer, cache)
    stops = sorted({tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.eos_token_id} - {None})
    size = section.batch_size
    outputs: list[str] = []
    with jax.set_mesh(mesh):
        for start in range(0, len(texts), size):
            chunk = texts[start: start + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))  # same batch shape every call: no recompile
            out = sampler(
                input_strings=padded,
                max_generation_steps=section.max_new_tokens,
                max_prompt_length=max_prompt,
                temperature=0.0,  # greedy: no top_p / top_k / beam
                eos_tokens=stops,
                echo=False,
            )
            outputs.extend(out.text[: len(chunk)])
    return outputs
