"""Config strictness: unknown keys, wrong types and missing values are one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tunix_rt.training.config import ConfigError, TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def _variant(tmp_path: Path, edit) -> Path:
    """A copy of sft_tiny.yaml changed by ``edit(dict)``."""
    raw = yaml.safe_load((CONFIGS / "sft_tiny.yaml").read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("name", ["sft_tiny", "submission_gemma3_1b"])
def test_shipped_configs_load(name: str) -> None:
    loaded = load_config(CONFIGS / f"{name}.yaml")
    assert isinstance(loaded.config, TrainConfig)
    assert loaded.config.name == name
    assert len(loaded.sha256) == 64


def test_shipped_configs_say_what_they_train() -> None:
    tiny = load_config(CONFIGS / "sft_tiny.yaml").config
    assert tiny.model.id == "tunix-rt/gemma3-tiny"
    assert tiny.model.source == "random-init" and not tiny.lora.enabled
    sub = load_config(CONFIGS / "submission_gemma3_1b.yaml").config
    assert sub.model.id == "google/gemma-3-1b-it"
    assert sub.model.source == "safetensors" and sub.lora.enabled and sub.model.dtype == "bfloat16"
    assert sub.data.dataset == "dev-reasoning-v2"
    assert sub.model.kaggle_model_source


def test_unknown_key(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["training"].update(num_steps=100))
    assert "training.num_steps: unknown key" in _error(path)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r.update(extras={"a": 1}))
    assert "extras: unknown key" in _error(path)


def test_wrong_type(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["training"].update(batch_size="a"))
    assert _error(path) == f"{path}: training.batch_size: expected int, got 'a'"


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["training"].update(max_steps=True))
    assert "training.max_steps: expected int, got True" in _error(path)


def test_bad_choice(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["model"].update(source="hub"))
    assert "model.source: expected one of 'random-init' | 'safetensors', got 'hub'" in _error(path)


def test_missing_value(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["training"].pop("max_steps"))
    assert "training.max_steps: missing value" in _error(path)


def test_missing_nested_value(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["model"]["architecture"].pop("num_heads"))
    assert "model.architecture.num_heads: missing value" in _error(path)


def test_null_where_a_value_is_required(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["data"].update(seq_len=None))
    assert "data.seq_len: expected int, got None" in _error(path)


def test_int_widens_to_float(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["lora"].update(alpha=8))
    assert load_config(path).config.lora.alpha == 8.0


def test_cross_field_rules(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["model"].update(preset="gemma3_1b_it"))
    assert "model.preset: set exactly one" in _error(path)
    path = _variant(tmp_path, lambda r: r["training"].update(batch_size=0))
    assert "training.batch_size: expected a positive value" in _error(path)
    path = _variant(tmp_path, lambda r: r["mesh"].update(fsdp=-1, tp=-1))
    assert "mesh.tp" in _error(path)


def test_random_model_cannot_claim_a_gemma_id(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda r: r["model"].update(id="google/gemma-3-1b-it"))
    assert "model.id: 'google/gemma-3-1b-it' is a Google model id" in _error(path)


def test_duplicate_key(tmp_path: Path) -> None:
    text = (CONFIGS / "sft_tiny.yaml").read_text(encoding="utf-8") + "name: again\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    assert "name: duplicate key" in _error(path)


def test_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in _error(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    assert "top level: expected a mapping" in _error(listy)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read config" in _error(tmp_path / "nope.yaml")


def test_checkpoint_session_keys(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "sft_tiny.yaml").config.checkpoint
    assert (cfg.interval_steps, cfg.max_to_keep, cfg.deadline_margin_s) == (0, 1, 600.0)  # the defaults
    path = _variant(tmp_path, lambda r: r["checkpoint"].update(interval_steps=-1))
    assert "checkpoint.interval_steps: expected 0 or a positive value, got -1" in _error(path)
    path = _variant(tmp_path, lambda r: r["checkpoint"].update(max_to_keep=0))
    assert "checkpoint.max_to_keep: expected a positive value, got 0" in _error(path)
    path = _variant(tmp_path, lambda r: r["checkpoint"].update(deadline_margin_s="10m"))
    assert "checkpoint.deadline_margin_s: expected float, got '10m'" in _error(path)
    path = _variant(tmp_path, lambda r: r["checkpoint"].update(every=5))
    assert "checkpoint.every: unknown key" in _error(path)
