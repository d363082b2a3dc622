"""The sweep's grid: ``--set`` parsing, the product, point ids, kernel slugs, and the strict config check."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunix_rt import kernel_id
from tunix_rt.errors import TunixRtError
from tunix_rt.sweep_grid import (
    GridAxis,
    Point,
    apply_settings,
    check_point,
    expand,
    parse_set,
    point_id,
    point_kernel_id,
    read_raw_config,
    write_point_config,
)
from tunix_rt.training.config import load_config

TINY = Path(__file__).resolve().parent.parent / "training" / "configs" / "sft_tiny.yaml"


def test_values_are_yaml_scalars() -> None:
    axis = parse_set("training.learning_rate=0.001, 3e-3 ,1")
    assert axis == GridAxis("training.learning_rate", (0.001, 0.003, 1))
    assert parse_set("lora.enabled=true,false").values == (True, False)
    assert parse_set("model.kaggle_model_source=null,a/b/c/d/1").values == (None, "a/b/c/d/1")
    assert parse_set("data.dataset=[x]").values == ("[x]",)  # not a list: the config holds scalars


@pytest.mark.parametrize("text", ["training.seed", "=1,2", "training.seed=", "training.seed=1,,2", "a..b=1",
                                  "training.seed=1,1"])
def test_malformed_set_is_exit_2(text: str) -> None:
    with pytest.raises(TunixRtError) as err:
        parse_set(text)
    assert err.value.exit_code == 2 and "--set" in err.value.message


def test_the_grid_is_the_product_in_flag_order() -> None:
    points = expand([GridAxis("a.x", (1, 2)), GridAxis("b.y", ("p", "q", "r"))])
    assert [p.settings for p in points] == [{"a.x": a, "b.y": b} for a in (1, 2) for b in ("p", "q", "r")]
    assert len({p.id for p in points}) == 6
    with pytest.raises(TunixRtError, match="given twice"):
        expand([GridAxis("a.x", (1,)), GridAxis("a.x", (2,))])
    with pytest.raises(TunixRtError, match="at least one --set"):
        expand([])


def test_point_ids_are_short_stable_and_ignore_flag_order() -> None:
    one = point_id({"training.learning_rate": 0.001, "training.seed": 1})
    assert one == point_id({"training.seed": 1, "training.learning_rate": 0.001})
    assert len(one) == 8 and int(one, 16) >= 0
    assert one != point_id({"training.learning_rate": 0.003, "training.seed": 1})
    assert point_id({"x": 1}) != point_id({"x": "1"})  # a string is not the number


def test_every_point_kernel_is_a_slug_kaggle_accepts() -> None:
    points = expand([parse_set("training.learning_rate=0.001,0.003,0.01"), parse_set("training.seed=0,1")])
    for point in points:
        ref = point_kernel_id("alice/tunix-rt-lr", point)
        assert ref == f"alice/tunix-rt-lr-{point.id}" and kernel_id.check(ref) == ref
    with pytest.raises(TunixRtError) as err:
        point_kernel_id(f"alice/{'a' * 42}", points[0])  # 42 + 1 + 8 > 50
    assert err.value.exit_code == 2 and "at most 50" in err.value.message
    with pytest.raises(TunixRtError, match="not the slug"):
        point_kernel_id("alice/Tunix_RT", points[0])


def test_settings_are_checked_by_the_strict_config() -> None:
    raw = read_raw_config(TINY)
    good = check_point(raw, Point({"training.learning_rate": 0.01, "lora.rank": 4}))
    assert good["training"]["learning_rate"] == 0.01 and good["lora"]["rank"] == 4
    assert raw["training"]["learning_rate"] == 0.003  # the base mapping is not changed
    for settings, needle in (({"training.learnng_rate": 0.1}, "training.learnng_rate: unknown key"),
                             ({"training.batch_size": "big"}, "training.batch_size: expected int"),
                             ({"mesh.tp": 0}, "mesh.tp"),
                             ({"training": 3}, "training: expected a mapping")):
        with pytest.raises(TunixRtError) as err:
            check_point(raw, Point(settings))
        assert err.value.exit_code == 2 and needle in err.value.message and "--set" in err.value.message
    with pytest.raises(TunixRtError, match="is a value, not a section"):
        apply_settings(raw, {"name.x": 1})


def test_the_point_config_file_loads_as_the_settings_say(tmp_path: Path) -> None:
    point = Point({"training.learning_rate": 0.01, "training.smoke_steps": 3})
    config = check_point(read_raw_config(TINY), point)
    path = write_point_config(config, tmp_path / f"sft_tiny-{point.id}.yaml")
    loaded = load_config(path).config
    assert loaded.training.learning_rate == 0.01 and loaded.training.smoke_steps == 3
    assert loaded.model == load_config(TINY).config.model
    assert write_point_config(config, tmp_path / "again.yaml").read_bytes() == path.read_bytes()
