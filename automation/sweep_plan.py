"""The plan of a sweep, checked before anything is pushed and kept as ``DIR/sweep.json``.

A sweep folder::

    DIR/
      sweep.json            the plan: kernel prefix, accelerator, mode, base config, one entry per point
      <point id>/           a normal run directory (run_state.json, bundle/, outputs/, evidence, report)
        <stem>-<id>.yaml    the point's config (the base config with its --set values)
      comparison.json|.md|.html   one row per point (sweep_compare.py)

A rerun of the same command finds the same plan and the same run directories, and picks up where it stopped. A
different sweep (another prefix, accelerator, mode or base config) is refused in one line: its points would
share run directories with this one's. Points added by a longer ``--set`` list join the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .bundle import BundleInputs
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import read_json_object, write_json_atomic
from .layout import STATE_FILE, SWEEP_FILE
from .progress import Reporter
from .sweep_grid import (
    GridAxis,
    Point,
    check_point,
    expand,
    point_config_name,
    point_kernel_id,
    read_raw_config,
    write_point_config,
)

PLAN_FILE = SWEEP_FILE
PLAN_SCHEMA = 1
_SAME_SWEEP = ("kernel_prefix", "accelerator", "mode", "config")


@dataclass(frozen=True)
class PlannedPoint:
    """A point with its kernel id and run directory."""

    point: Point
    kernel_id: str
    run_dir: Path
    config: dict[str, Any]  # the point's config mapping (validated)

    @property
    def id(self) -> str:
        return self.point.id

    def config_path(self, base: Path) -> Path:
        return self.run_dir / point_config_name(base, self.point)

    def inputs(self, base: Path, mode: str, accelerator: str) -> BundleInputs:
        """The bundle inputs of this point (its own config file, the sweep's kernel settings)."""
        return BundleInputs(mode=mode, config=str(self.config_path(base)), kernel_id=self.kernel_id,
                            accelerator=accelerator)


@dataclass(frozen=True)
class SweepPlan:
    """The grid and where its points run (see the module docstring)."""

    sweep_dir: Path
    kernel_prefix: str
    accelerator: str
    mode: str
    config: Path  # the base config, resolved
    points: tuple[PlannedPoint, ...]

    def config_label(self) -> str:
        try:
            return self.config.relative_to(paths.project_root()).as_posix()
        except ValueError:
            return self.config.name  # no host folder in the plan (it sits next to the evidence)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, "kernel_prefix": self.kernel_prefix, "accelerator": self.accelerator,
                "mode": self.mode, "config": self.config_label(),
                "points": [{"id": p.id, "settings": p.point.settings, "kernel_ref": p.kernel_id,
                            "run_dir": p.run_dir.name} for p in self.points]}


def resolve_config(value: str) -> Path:
    """``--config``: a file, relative to the current folder or else to the checkout (as bundle.py does)."""
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists():
        path = paths.project_root() / path
    if not path.is_file():
        raise TunixRtError(f"--config {value}: no such file", EXIT_USAGE)
    return path.resolve()


def make_plan(sweep_dir: Path, *, kernel_prefix: str, accelerator: str, mode: str, config: str,
              axes: list[GridAxis], reporter: Reporter) -> SweepPlan:
    """Expand and check the grid (exit 2 on any bad key, value or kernel id); writes nothing."""
    from .push import resolve_accelerator  # unknown → exit 2; retired → a warning

    resolve_accelerator(accelerator, reporter)
    base = resolve_config(config)
    raw = read_raw_config(base)
    planned = []
    for point in expand(axes):
        planned.append(PlannedPoint(point, point_kernel_id(kernel_prefix, point), Path(sweep_dir) / point.id,
                                    check_point(raw, point)))
    return SweepPlan(Path(sweep_dir), kernel_prefix, accelerator, mode, base, tuple(planned))


def write_plan(plan: SweepPlan) -> None:
    """Check the folder holds no other sweep, then write sweep.json (merged with earlier points) and each
    point's config file (the same bytes on a rerun)."""
    path = plan.sweep_dir / PLAN_FILE
    doc = plan.to_dict()
    if path.exists():
        old = read_json_object(path)
        if old is None or not all(isinstance(p, dict) for p in old.get("points", [])):
            raise TunixRtError(f"{path}: unreadable (not a sweep plan); use a new --run-dir", EXIT_USAGE)
        for key in _SAME_SWEEP:
            if old.get(key) != doc[key]:
                raise TunixRtError(f"{path}: this folder holds a sweep with {key} {old.get(key)!r}, not "
                                   f"{doc[key]!r}; use a new --run-dir", EXIT_USAGE)
        ids = {p["id"] for p in doc["points"]}
        doc["points"] = [p for p in old.get("points", []) if p.get("id") not in ids] + doc["points"]
    elif plan.sweep_dir.is_dir() and (plan.sweep_dir / STATE_FILE).exists():
        raise TunixRtError(f"{plan.sweep_dir}: a run directory, not a sweep folder; use a new --run-dir", EXIT_USAGE)
    for p in plan.points:
        dest = p.config_path(plan.config)
        state = p.run_dir / STATE_FILE
        if dest.exists() and state.exists():
            continue  # a started point: its config is what its bundle was built from
        write_point_config(p.config, dest)
    write_json_atomic(path, doc)
