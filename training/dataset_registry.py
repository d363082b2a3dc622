"""The dataset registry: a key names a seeded composition of generated traces.

`dev-reasoning-v2` (the default, 550 traces) is committed as `datasets/dev-reasoning-v2/dataset.jsonl`
with its `manifest.json`; `dev-reasoning-v2-x10` (5,500 traces, another seed) is rebuilt on demand because
it is ten times larger and regenerates in well under a second. Both are byte-for-byte reproducible:
:func:`write_dataset` writes a key's two files and :func:`check_dataset` compares the committed ones with a
fresh build (``training/build_dataset.py`` and its ``--check``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datagen import GENERATOR, build_traces
from .report import canonical_json, write_atomic

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
DEFAULT_DATASET = "dev-reasoning-v2"


class DatasetError(ValueError):
    """An unknown dataset key or a committed dataset file that does not match its manifest."""


@dataclass(frozen=True)
class DatasetSpec:
    """How a dataset key is built: generator seed and per-family counts."""

    key: str
    version: str
    seed: int
    composition: Mapping[str, int]
    committed: bool  # True: read from datasets/<key>/dataset.jsonl; False: generated on demand

    @property
    def trace_count(self) -> int:
        return sum(self.composition.values())


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: its records and the sha256 of their canonical JSONL bytes."""

    name: str
    records: list[dict[str, Any]] = field(repr=False)
    sha256: str

    @property
    def n_traces(self) -> int:
        return len(self.records)


_V2_COMPOSITION = {"reasoning": 385, "synthetic": 110, "golden_style": 35, "edge_case": 20}

SPECS: dict[str, DatasetSpec] = {
    "dev-reasoning-v2": DatasetSpec("dev-reasoning-v2", "2", 20250, _V2_COMPOSITION, committed=True),
    # Ten times each family from the same generator with another seed: learning.md measured that this much
    # data makes the tiny model's format compliance reliable (>= 0.96) in the same step budget.
    "dev-reasoning-v2-x10": DatasetSpec(
        "dev-reasoning-v2-x10", "2", 20251, {k: 10 * v for k, v in _V2_COMPOSITION.items()}, committed=False
    ),
}
KNOWN_DATASETS: tuple[str, ...] = tuple(SPECS)


def canonical_jsonl(records: Iterable[Mapping[str, Any]]) -> bytes:
    """The one byte form of a record list: sorted keys, UTF-8 kept as is, one record per `\\n`-ended line."""
    lines = (json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n" for rec in records)
    return "".join(lines).encode("utf-8")


def spec_for(key: str) -> DatasetSpec:
    """The build spec of ``key``; DatasetError (one line, listing the known keys) when unknown."""
    try:
        return SPECS[key]
    except KeyError:
        raise DatasetError(f"unknown dataset {key!r}; known datasets: {', '.join(KNOWN_DATASETS)}") from None


def generate_records(key: str) -> list[dict[str, Any]]:
    """Generate the records of ``key`` from its seed (the same bytes every time)."""
    spec = spec_for(key)
    return build_traces(spec.composition, spec.seed, spec.key)


def manifest_for(key: str, jsonl_bytes: bytes) -> dict[str, Any]:
    """The manifest of a dataset file (no wall-clock time, so it is reproducible too)."""
    spec = spec_for(key)
    return {
        "key": spec.key,
        "version": spec.version,
        "trace_count": jsonl_bytes.count(b"\n"),
        "composition": dict(spec.composition),
        "seed": spec.seed,
        "generator": GENERATOR,
        "sha256": hashlib.sha256(jsonl_bytes).hexdigest(),
    }


def dataset_dir(key: str) -> Path:
    """Where a committed dataset lives."""
    return DATASETS_DIR / key


def _load_committed(spec: DatasetSpec) -> Dataset:
    folder = dataset_dir(spec.key)
    jsonl_path, manifest_path = folder / "dataset.jsonl", folder / "manifest.json"
    try:
        raw = jsonl_path.read_bytes()
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"dataset {spec.key!r}: cannot read {exc.filename}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"dataset {spec.key!r}: {manifest_path} is not valid JSON: {exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if manifest.get("sha256") != digest:
        raise DatasetError(
            f"dataset {spec.key!r}: {jsonl_path} sha256 {digest} does not match manifest "
            f"{manifest.get('sha256')}; rebuild it with training/build_dataset.py"
        )
    records = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"dataset {spec.key!r}: {jsonl_path} line {lineno} is not JSON: {exc.msg}"
            ) from None
    return Dataset(name=spec.key, records=records, sha256=digest)


def load_dataset(key: str = DEFAULT_DATASET) -> Dataset:
    """Load a dataset by key: the committed file (checked against its manifest) or a deterministic build."""
    spec = spec_for(key)
    if spec.committed:
        return _load_committed(spec)
    records = generate_records(key)
    digest = hashlib.sha256(canonical_jsonl(records)).hexdigest()
    return Dataset(name=spec.key, records=records, sha256=digest)


def render_files(key: str) -> dict[str, bytes]:
    """The exact bytes of ``dataset.jsonl`` and ``manifest.json`` for ``key``."""
    jsonl = canonical_jsonl(generate_records(key))
    return {"dataset.jsonl": jsonl, "manifest.json": canonical_json(manifest_for(key, jsonl)).encode("utf-8")}


def write_dataset(key: str, out_dir: Path) -> dict[str, Path]:
    """Write both files of ``key`` into ``out_dir`` (atomically); returns their paths."""
    return {name: write_atomic(out_dir / name, data) for name, data in render_files(key).items()}


def check_dataset(key: str, out_dir: Path) -> str | None:
    """None when the files in ``out_dir`` equal a fresh build byte for byte, else a one-line reason."""
    for name, data in render_files(key).items():
        path = out_dir / name
        if not path.is_file():
            return f"{path} is missing; run training/build_dataset.py to create it"
        if path.read_bytes() != data:
            return f"{path} differs from a fresh build of {key!r}; rebuild it with training/build_dataset.py"
    return None
