"""The run state ``<run-dir>/run_state.json`` as a typed object (pipx ``PipxMetadata`` style).

:class:`RunState` is a versioned dataclass with ``to_dict``/``from_dict``/``read``/``write``: a command reads it
once, passes it down, and the stage engine (engine.py) writes it after each stage. It is the only owner of the
file; a stage that must survive a crash mid-way (push records its attempt before SaveKernel, wait each status
change, pull each file it downloaded) writes the same object again (:meth:`RunState.write`).

What it holds: the run's platform, accelerator, mode, command and raw log; the **bundle record** (what was
built or pushed: sha256s, inputs); the **Kaggle record** (kernel, version, status in the one vocabulary of
kernel_status.py, timings, the wait's counters, the files pulled); one **stage record** per stage (``status``
done/failed/running plus details). Keys a newer tunix-rt wrote that this one does not know are kept as read.

Versions: 2 (this one). A schema-1 file (tunix-rt before the typed state, issue-8 fields included) is
migrated when read: its ``rehearse`` stage is the ``execute`` stage now; everything else has the same shape.
Any other file — not JSON, another ``schema_version``, a field of the wrong type — fails with one line naming
the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import EXIT_USAGE, TunixRtError
from .fsutil import write_json_atomic
from .kernel_status import KernelStatus
from .layout import STATE_FILE, bundle_notebook

SCHEMA_VERSION = 2
STAGE_STATUSES = ("running", "done", "failed", "interrupted")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the UTC times the state records (pushed_at, finished_at, started_at, …)


def utc_now() -> str:
    """Now, as the run state records times (:data:`TIME_FORMAT`)."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def utc_epoch(text: str | None) -> float | None:
    """A time the run state recorded (:func:`utc_now`'s format) as seconds since the epoch; None when it is
    missing or unreadable."""
    try:
        return datetime.strptime(text or "", TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def state_path(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_FILE


class _Fields:
    """Typed reads from one JSON object of the file; a wrong type is one line naming ``where.key``."""

    def __init__(self, data: Any, where: str, path: Path) -> None:
        if not isinstance(data, dict):
            raise _bad(path, where, "expected an object")
        self.data, self.where, self.path = data, where, path

    def _get(self, key: str, types: tuple[type, ...], what: str) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise _bad(self.path, f"{self.where}.{key}" if self.where else key, f"expected {what}, found {value!r}")
        return value

    def str(self, key: str) -> str | None:
        return self._get(key, (str,), "a string")

    def int(self, key: str) -> int | None:
        value = self._get(key, (int, float), "an integer")
        return None if value is None else int(value)

    def float(self, key: str) -> float | None:
        value = self._get(key, (int, float), "a number")
        return None if value is None else float(value)

    def bool(self, key: str) -> bool:
        return bool(self._get(key, (bool,), "true or false"))

    def obj(self, key: str) -> dict[str, Any] | None:
        return self._get(key, (dict,), "an object")

    def strs(self, key: str) -> list[str]:
        value = self._get(key, (list,), "a list") or []
        if not all(isinstance(v, str) for v in value):
            raise _bad(self.path, f"{self.where}.{key}", "expected a list of strings")
        return list(value)

    def unknown(self, known: set[str]) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in known}


def _bad(path: Path, where: str, problem: str) -> TunixRtError:
    return TunixRtError(f"{path}: {where}: {problem}; fix the file or use a new --run-dir", EXIT_USAGE)


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)} - {"extra"}


@dataclass
class BundleRecord:
    """The bundle in ``<run-dir>/bundle/`` as built (and, on Kaggle, pushed)."""

    sha256: str  # of the notebook: the code that runs
    metadata_sha256: str | None = None
    size_bytes: int | None = None
    payload_sha256: str | None = None
    config_path: str | None = None
    dataset: str | None = None
    eval_set: str | None = None
    mode: str | None = None
    kernel_id: str | None = None
    path: str = bundle_notebook()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> BundleRecord:
        f = _Fields(data, "bundle", path)
        return cls(sha256=f.str("sha256") or "", metadata_sha256=f.str("metadata_sha256"),
                   size_bytes=f.int("size_bytes"), payload_sha256=f.str("payload_sha256"),
                   config_path=f.str("config_path"), dataset=f.str("dataset"), eval_set=f.str("eval_set"),
                   mode=f.str("mode"), kernel_id=f.str("kernel_id"),
                   path=f.str("path") or bundle_notebook(), extra=f.unknown(_names(cls)))

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass
class PushAttempt:
    """A SaveKernel under way: recorded before the call, so a crash never leads to a second version."""

    kernel_ref: str
    previous_version: int
    kernel_existed: bool = True
    reported_current_version: int | None = None
    started_at: str | None = None

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> PushAttempt:
        f = _Fields(data, "kaggle.push_attempt", path)
        return cls(kernel_ref=f.str("kernel_ref") or "", previous_version=f.int("previous_version") or 0,
                   kernel_existed=f.bool("kernel_existed") if "kernel_existed" in f.data else True,
                   reported_current_version=f.int("reported_current_version"), started_at=f.str("started_at"))

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass
class PulledFile:
    """An output file downloaded and verified (a rerun of pull skips it while it is unchanged)."""

    bytes: int
    sha256: str


@dataclass
class KaggleRecord:
    """The pushed kernel version and everything push, wait and pull learned about it."""

    kernel_ref: str | None = None
    version_number: int | None = None
    url: str | None = None
    status: KernelStatus | None = None  # kernel_status.py: PUSHED until a poll answers, then Kaggle's
    failure_message: str | None = None
    machine_shape: str | None = None
    accelerator: str | None = None
    session_timeout_s: int | None = None
    kaggle_kernel_id: int | None = None
    pushed_at: str | None = None
    pushed_at_epoch: float | None = None
    last_status_at: str | None = None
    finished_at: str | None = None
    seen_active: bool = False  # this version was seen QUEUED/RUNNING/NEW_SCRIPT (the stale-status guard)
    wait_api_calls: int = 0
    log_stream: dict[str, Any] | None = None  # log_stream.LogStreamWatch.stats()
    pulled_files: dict[str, PulledFile] = field(default_factory=dict)
    push_attempt: PushAttempt | None = None
    push_error: str | None = None  # Kaggle created the version but refused its sources: the run is spent
    invalid_sources: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pushed(self) -> bool:
        return bool(self.version_number)

    @property
    def label(self) -> str:
        return f"{self.kernel_ref} v{self.version_number}"

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> KaggleRecord:
        f = _Fields(data, "kaggle", path)
        status = f.str("status")
        try:
            parsed = KernelStatus.parse(status) if status else None
        except ValueError as exc:
            raise _bad(path, "kaggle.status", str(exc)) from None
        pulled: dict[str, PulledFile] = {}
        for name, rec in (f.obj("pulled_files") or {}).items():
            g = _Fields(rec, f"kaggle.pulled_files.{name}", path)
            pulled[name] = PulledFile(bytes=g.int("bytes") or 0, sha256=g.str("sha256") or "")
        attempt = f.obj("push_attempt")
        return cls(
            kernel_ref=f.str("kernel_ref"), version_number=f.int("version_number"), url=f.str("url"),
            status=parsed, failure_message=f.str("failure_message"), machine_shape=f.str("machine_shape"),
            accelerator=f.str("accelerator"), session_timeout_s=f.int("session_timeout_s"),
            kaggle_kernel_id=f.int("kaggle_kernel_id"), pushed_at=f.str("pushed_at"),
            pushed_at_epoch=f.float("pushed_at_epoch"), last_status_at=f.str("last_status_at"),
            finished_at=f.str("finished_at"), seen_active=f.bool("seen_active"),
            wait_api_calls=f.int("wait_api_calls") or 0, log_stream=f.obj("log_stream"), pulled_files=pulled,
            push_attempt=PushAttempt.from_dict(attempt, path) if attempt is not None else None,
            push_error=f.str("push_error"), invalid_sources=f.strs("invalid_sources"),
            extra=f.unknown(_names(cls)),
        )

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass
class StageRecord:
    """One stage: ``running``, ``done`` or ``failed``, and what it reported (counts, paths, reasons)."""

    status: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == "done"

    def to_dict(self) -> dict[str, Any]:
        return {**self.details, "status": self.status}


@dataclass
class RunState:
    """Everything a run directory's commands know about the run (see the module docstring)."""

    run_dir: Path
    run_version: str
    platform: str | None = None  # local | docker | kaggle | emulator: who ran the notebook
    accelerator: str | None = None  # the one asked for
    mode: str | None = None
    command: str | None = None  # the tunix-rt command as a user would retype it
    raw_log: str | None = None  # relative to the run directory
    bundle: BundleRecord | None = None
    kaggle: KaggleRecord | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # --- the file -----------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return state_path(self.run_dir)

    @classmethod
    def new(cls, run_dir: Path) -> RunState:
        return cls(run_dir=Path(run_dir), run_version=Path(run_dir).resolve().name)

    @classmethod
    def read(cls, run_dir: Path) -> RunState:
        """The state of ``run_dir``; a fresh one (not written) when the file is absent."""
        run_dir = Path(run_dir)
        path = state_path(run_dir)
        if not path.exists():
            return cls.new(run_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise TunixRtError(f"{path}: unreadable run state ({type(exc).__name__}); fix or remove it",
                               EXIT_USAGE) from None
        return cls.from_dict(data, run_dir)

    def write(self) -> Path:
        """Write the state atomically (a crash never leaves a half-written file)."""
        return write_json_atomic(self.path, self.to_dict())

    # --- conversion ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, run_dir: Path) -> RunState:
        """Build the state from the file's JSON, migrating a schema-1 file (see the module docstring)."""
        path = state_path(run_dir)
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version == 1:
            data = migrate_v1(data)
        elif version != SCHEMA_VERSION:
            raise TunixRtError(f"{path}: not a tunix-rt run state this version can read (schema_version "
                               f"{version!r}; expected 1 or {SCHEMA_VERSION}); use a new --run-dir", EXIT_USAGE)
        f = _Fields(data, "", path)
        stages = {}
        for name, rec in (f.obj("stages") or {}).items():
            g = _Fields(rec, f"stages.{name}", path)
            status = g.str("status")
            if status not in STAGE_STATUSES:
                raise _bad(path, f"stages.{name}.status", f"expected one of {', '.join(STAGE_STATUSES)}")
            stages[name] = StageRecord(status, g.unknown({"status"}))
        bundle, kaggle = f.obj("bundle"), f.obj("kaggle")
        return cls(
            run_dir=Path(run_dir), run_version=f.str("run_version") or Path(run_dir).resolve().name,
            platform=f.str("platform"), accelerator=f.str("accelerator"), mode=f.str("mode"),
            command=f.str("command"), raw_log=f.str("raw_log"),
            bundle=BundleRecord.from_dict(bundle, path) if bundle else None,
            kaggle=KaggleRecord.from_dict(kaggle, path) if kaggle is not None else None,
            stages=stages, extra=f.unknown(_names(cls) | {"schema_version"}),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in _plain(self).items() if k != "run_dir"}
        out["stages"] = {name: rec.to_dict() for name, rec in self.stages.items()}
        return {"schema_version": SCHEMA_VERSION, **out}

    # --- stages -------------------------------------------------------------------------------------
    def stage(self, name: str) -> StageRecord | None:
        return self.stages.get(name)

    def done(self, name: str) -> bool:
        rec = self.stages.get(name)
        return rec is not None and rec.done

    def mark(self, name: str, status: str, **details: Any) -> StageRecord:
        """Record a stage's status (in memory; the engine writes the state)."""
        if status not in STAGE_STATUSES:
            raise ValueError(f"stage status {status!r}: expected one of {STAGE_STATUSES}")
        record = StageRecord(status, {k: v for k, v in details.items() if v is not None})
        self.stages[name] = record
        return record

    def kaggle_record(self) -> KaggleRecord:
        """The Kaggle record, created empty on first use."""
        if self.kaggle is None:
            self.kaggle = KaggleRecord()
        return self.kaggle


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 file as schema 2: the ``rehearse`` stage (the runner's) is called ``execute`` now."""
    out = dict(data, schema_version=SCHEMA_VERSION)
    stages = dict(out.get("stages") or {}) if isinstance(out.get("stages"), dict) else out.get("stages")
    if isinstance(stages, dict) and "rehearse" in stages and "execute" not in stages:
        stages["execute"] = stages.pop("rehearse")
    out["stages"] = stages
    return out


def _plain(obj: Any) -> dict[str, Any]:
    """A record as JSON-ready data: nested records converted, ``extra`` keys merged back at their level."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name == "extra":
            continue
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif isinstance(value, dict):
            value = {k: (v.to_dict() if hasattr(v, "to_dict") else _plain(v) if hasattr(v, "__dataclass_fields__")
                         else v) for k, v in value.items()}
        elif isinstance(value, (KernelStatus, Path)):
            value = str(value)
        out[f.name] = value
    extra = getattr(obj, "extra", None) or {}
    return {**extra, **out}
