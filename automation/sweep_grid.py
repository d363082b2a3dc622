"""The grid of a sweep: ``--set KEY=V1,V2,…`` lists over dotted config keys, their product, one point each.

* **Values** are YAML scalars, as the config file would hold them (``0.003`` and ``3e-3`` floats, ``4`` an int,
  ``true``, ``null``, anything else a string); a list item cannot contain a comma.
* **Checked before anything is pushed**: every point's config is the base config with its settings applied,
  validated by the strict config loader (training/config.py): an unknown key or a bad value is one line naming
  the ``--set`` and the key, exit 2.
* **Point ids** are the first 8 hex digits of the sha256 of the point's settings (canonical JSON), so the same
  settings get the same id whatever the order of the flags: a rerun finds its run directories again, and a
  value added to a list leaves the other points' ids alone. The kernel of a point is
  ``<OWNER/SLUG-PREFIX>-<point id>`` (checked by kernel_id.py: a prefix too long for Kaggle's 50-character
  slugs is refused here).
* **The point's config** is written as ``<point dir>/<base stem>-<point id>.yaml``: the bundle ships it as
  ``training/configs/<that name>`` (payload.py), so the evidence names a config that exists in the zip.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import kernel_id as kernel_id_rule
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import write_atomic

POINT_ID_HEX = 8
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


@dataclass(frozen=True)
class GridAxis:
    """One ``--set``: a dotted config key and the values it takes."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Point:
    """One point of the grid: its settings (dotted key → value, in ``--set`` order) and its id."""

    settings: dict[str, Any]

    @property
    def id(self) -> str:
        return point_id(self.settings)

    def label(self) -> str:
        """``key=value, …`` for humans."""
        return ", ".join(f"{k}={_yaml_scalar(v)}" for k, v in self.settings.items())


def point_id(settings: dict[str, Any]) -> str:
    """The short, stable id of a point: sha256 of its settings as canonical JSON, first 8 hex digits."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:POINT_ID_HEX]


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_set(text: str) -> GridAxis:
    """``KEY=V1,V2,…`` → a :class:`GridAxis` (exit 2 when it is not of that shape)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    parts = [p.strip() for p in rest.split(",")]
    if not sep or not key or any(not p for p in key.split(".")) or not all(parts):
        raise TunixRtError(f"--set {text!r}: expected KEY=V1,V2,… with a dotted config key "
                           "(e.g. training.learning_rate=0.001,0.003)", EXIT_USAGE)
    values = []
    for part in parts:
        try:
            value = yaml.safe_load(part)
        except yaml.YAMLError:
            value = part
        if isinstance(value, (dict, list)):  # a flow mapping or list is not a config scalar
            value = part
        elif isinstance(value, str) and _EXPONENT.match(part):  # 3e-3: YAML 1.1 wants 3.0e-3, people do not
            value = float(part)
        values.append(value)
    if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
        raise TunixRtError(f"--set {text!r}: a value is listed twice", EXIT_USAGE)
    return GridAxis(key, tuple(values))


def expand(axes: list[GridAxis]) -> list[Point]:
    """The product of the axes, in ``--set`` order (the last key varies fastest)."""
    if not axes:
        raise TunixRtError("sweep: give at least one --set KEY=V1,V2,…", EXIT_USAGE)
    keys = [a.key for a in axes]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise TunixRtError(f"--set {dup[0]}: given twice; list all its values in one --set", EXIT_USAGE)
    return [Point(dict(zip(keys, combo, strict=True))) for combo in itertools.product(*(a.values for a in axes))]


def apply_settings(raw: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw config mapping with each dotted key set (missing sections are created; the strict
    loader then says whether the key exists)."""
    out = copy.deepcopy(raw)
    for key, value in settings.items():
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TunixRtError(f"--set {key}: {'.'.join(parts[:i + 1])} is a value, not a section", EXIT_USAGE)
            node = child
        node[parts[-1]] = value
    return out


def read_raw_config(path: Path) -> dict[str, Any]:
    """The base config, validated as it is (strict loader), and its raw mapping."""
    from tunix_rt.training.config import ConfigError, load_config  # light: PyYAML only

    try:
        load_config(path)
    except ConfigError as exc:
        raise TunixRtError(str(exc), EXIT_USAGE) from None
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)  # load_config accepted it
    return raw


def check_point(raw: dict[str, Any], point: Point) -> dict[str, Any]:
    """The point's config mapping, validated by the strict loader (exit 2 naming the --set and the key)."""
    from tunix_rt.training.config import ConfigError, parse_config

    config = apply_settings(raw, point.settings)
    try:
        parse_config(config)
    except ConfigError as exc:
        raise TunixRtError(f"--set {point.label()}: {exc}", EXIT_USAGE) from None
    return config


def point_kernel_id(prefix: str, point: Point) -> str:
    """``<OWNER/SLUG-PREFIX>-<point id>``, a kernel id Kaggle accepts (exit 2 otherwise)."""
    kernel_id_rule.check(prefix)
    return kernel_id_rule.check(f"{prefix}-{point.id}", flag="--kernel-id (with the point id)")


def point_config_name(base: Path, point: Point) -> str:
    """The file name of a point's config (unique in the payload's configs/ folder)."""
    return f"{base.stem}-{point.id}.yaml"


def write_point_config(config: dict[str, Any], dest: Path) -> Path:
    """Write a point's config mapping as YAML (atomically, deterministic bytes)."""
    text = ("# Written by `tunix-rt sweep`: the base config with this point's --set values.\n"
            + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True))
    return write_atomic(dest, text.encode("utf-8"))
