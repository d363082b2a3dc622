"""Build the pushable kernel folder ``<run-dir>/bundle/``: ``kernel-metadata.json`` + the kernel notebook.

The notebook is ``kernel/kaggle_submission.ipynb`` with two cells filled in: the papermill ``parameters``
cell (mode, config, dataset, eval set, run version, session timeout) and the payload cell, a base64
deterministic tar.gz of everything the kernel trains with (``training/`` code, configs, datasets, tokenizer,
eval sets, and ``kernel/requirements*.txt``; payload.py). The kernel unpacks it into a temporary folder on
start, so it needs nothing but the notebook (and, for real Gemma weights, the ``model_sources`` Kaggle mounts).

Deterministic: the same inputs give the same bytes (sorted tar entries, mtime 0, uid/gid 0, fixed modes,
gzip mtime 0, fixed cell ids, canonical nbformat JSON). The notebook's sha256 identifies the code that runs;
it is recorded in ``run_state.json`` and, through evidence, in ``run_manifest.json``.

Size limit: Kaggle documents no maximum for a pushed notebook; the client sends the whole notebook as one
string inside one JSON request, and Kaggle's editor has to open it. We refuse notebooks over
``MAX_NOTEBOOK_BYTES`` = 8 MiB (8,388,608 bytes) — far above our bundle (well under 1 MB: the payload is
code, a 550-trace dataset and a 512-token tokenizer) and low enough to stay clear of request-size caps.
Model weights never go into the bundle: they come through ``model_sources``.

Kernel id: ``--kernel-id OWNER/SLUG`` (the one rule: kernel_id.py); without it
``local/tunix-rt-<run_version, slugified>`` (e.g. ``local/tunix-rt-m33-rehearsal``). That default serves
rehearsals, which never reach Kaggle; ``push`` requires ``--kernel-id``. The title of a new kernel is its slug,
so Kaggle's slug check always agrees; an existing kernel keeps its title (the push looks it up first).

The bundle owns the pushed folder: :func:`prepare_bundle` (or :func:`adopt_bundle` for ``push --bundle DIR``)
makes both files in memory, checked, with the final metadata (:func:`kernel_metadata`, the one place its
fields are decided), and :meth:`PreparedBundle.write` writes them once. Nothing rewrites them afterwards: the
push sends exactly what was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .accelerators import resolve
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import dig, dumps_json, sha256_bytes, sha256_file, write_atomic
from .input_checks import check_eval_set_file, check_payload_eval_set
from .kernel_id import canonical_slug
from .kernel_id import check as check_kernel_id
from .kernel_metadata import kernel_metadata, read_folder_metadata, strip_notebook_pins, tunix_rt_metadata
from .layout import BUNDLE_DIR, METADATA_NAME, NOTEBOOK_NAME
from .payload import (  # noqa: F401  (the payload's public names, re-exported: bundle is their front door)
    PAYLOAD_TAG,
    build_payload,
    extract_payload,
    payload_files,
    payload_name,
    render_notebook,
)
from .runstate import BundleRecord

MAX_NOTEBOOK_BYTES = 8 * 1024 * 1024
DEFAULT_KERNEL_OWNER = "local"
DEFAULT_CONFIG = "training/configs/sft_tiny.yaml"
MODES = ("smoke", "full")


@dataclass(frozen=True)
class BundleInfo:
    """A built (or loaded) bundle folder and the inputs it was built from."""

    bundle_dir: Path
    notebook_path: Path
    metadata_path: Path
    sha256: str  # of the notebook file: the code that runs
    metadata_sha256: str
    size_bytes: int  # of the notebook file (the size limit applies to it)
    payload_sha256: str
    payload_files: tuple[str, ...]
    kernel_id: str
    mode: str
    config: str  # payload path, relative to the payload's training/ folder (the notebook's parameter)
    config_path: str  # the config's place in the payload (training/configs/…), where the zip holds it too
    dataset: str
    eval_set: str  # the eval set's place in the payload (training/evalsets/…)
    run_version: str
    accelerator: str
    model_sources: tuple[str, ...]
    session_timeout_s: int | None = None  # baked in: a full run checkpoints and stops before it (None: never)

    def state_record(self) -> BundleRecord:
        """The bundle record of the run state (runstate.py)."""
        return BundleRecord(
            sha256=self.sha256, metadata_sha256=self.metadata_sha256, size_bytes=self.size_bytes,
            payload_sha256=self.payload_sha256 or None, config_path=self.config_path or None,
            dataset=self.dataset or None, eval_set=self.eval_set or None, mode=self.mode or None,
            kernel_id=self.kernel_id, path=f"{BUNDLE_DIR}/{self.notebook_path.name}")

    def as_dict(self) -> dict[str, Any]:
        """What ``tunix-rt bundle --json`` reports."""
        return {"bundle_dir": str(self.bundle_dir), "notebook": str(self.notebook_path),
                "metadata": str(self.metadata_path), "sha256": self.sha256, "metadata_sha256": self.metadata_sha256,
                "size_bytes": self.size_bytes, "payload_sha256": self.payload_sha256,
                "payload_files": len(self.payload_files), "kernel_id": self.kernel_id, "mode": self.mode,
                "config": self.config_path, "dataset": self.dataset, "eval_set": self.eval_set,
                "run_version": self.run_version, "accelerator": self.accelerator,
                "model_sources": list(self.model_sources)}


# --------------------------------------------------------------------------------------------- inputs


def _resolve_path(value: str | Path, what: str) -> Path:
    """A user-given path: absolute, or relative to the current directory, else to the checkout root."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        here = Path.cwd() / path
        path = here if here.exists() else paths.project_root() / path
    if not path.is_file():
        raise TunixRtError(f"{what} {value}: no such file", EXIT_USAGE)
    return path.resolve()


def _display(path: Path) -> str:
    """Project-relative text for paths inside the checkout (evidence must not carry host paths)."""
    try:
        return path.resolve().relative_to(paths.project_root()).as_posix()
    except ValueError:
        return str(path)


def _load_config(path: Path) -> Any:
    from tunix_rt.training.config import ConfigError, load_config  # light: PyYAML only

    try:
        return load_config(path).config
    except ConfigError as exc:
        raise TunixRtError(str(exc), EXIT_USAGE) from None


def _check_dataset(key: str) -> None:
    from tunix_rt.training.dataset_registry import DatasetError, spec_for  # light: no JAX

    try:
        spec_for(key)
    except DatasetError as exc:
        raise TunixRtError(str(exc), EXIT_USAGE) from None


def default_kernel_id(run_version: str) -> str:
    """``local/tunix-rt-<run_version>`` with the version slugified (``m33_rehearsal`` → ``m33-rehearsal``)."""
    return f"{DEFAULT_KERNEL_OWNER}/{canonical_slug(f'tunix-rt-{run_version}')}"


def _check_model_source(source: str, config_path: Path) -> str:
    parts = source.split("/")
    if len(parts) != 5 or not all(parts):
        raise TunixRtError(
            f"{_display(config_path)}: model.kaggle_model_source {source!r}: expected "
            "owner/model/framework/variation/version", EXIT_USAGE)
    return source


# --------------------------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class PreparedBundle:
    """A bundle in memory, checked and complete: :meth:`write` puts its two files into ``<run-dir>/bundle/``
    (the only place they are ever written). ``parameters`` is None for a hand-made folder (``push --bundle``)."""

    notebook: bytes
    metadata: dict[str, Any]
    parameters: dict[str, Any] | None
    payload_sha256: str | None
    payload_files: tuple[str, ...]
    config_path: str | None
    dataset: str | None
    eval_set: str | None
    run_version: str
    accelerator: str

    @property
    def model_sources(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("model_sources") or ())

    def write(self, run_dir: Path) -> BundleInfo:
        """Write the notebook and ``kernel-metadata.json`` atomically; returns the bundle as written."""
        bundle_dir = Path(run_dir).resolve() / BUNDLE_DIR
        if bundle_dir.is_dir() and not bundle_dir.is_symlink():
            for stale in bundle_dir.iterdir():  # a file of an earlier bundle must not be pushed with this one
                if stale.is_file() and stale.name not in (self.metadata["code_file"], METADATA_NAME):
                    stale.unlink()
        metadata = dumps_json(self.metadata).encode("utf-8")
        notebook_path = write_atomic(bundle_dir / self.metadata["code_file"], self.notebook)
        metadata_path = write_atomic(bundle_dir / METADATA_NAME, metadata)
        params = self.parameters or {}
        return BundleInfo(
            bundle_dir=bundle_dir,
            notebook_path=notebook_path,
            metadata_path=metadata_path,
            sha256=sha256_bytes(self.notebook),
            metadata_sha256=sha256_bytes(metadata),
            size_bytes=len(self.notebook),
            payload_sha256=self.payload_sha256 or "",
            payload_files=self.payload_files,
            kernel_id=str(self.metadata["id"]),
            mode=str(params.get("mode", "")),
            config=str(params.get("config", "")),
            config_path=self.config_path or "",
            dataset=self.dataset or "",
            eval_set=self.eval_set or "",
            run_version=self.run_version,
            accelerator=self.accelerator,
            model_sources=self.model_sources,
            session_timeout_s=params.get("session_timeout_s"),
        )


def prepare_bundle(
    run_dir: Path,
    *,
    mode: str = "smoke",
    config: str | Path | None = None,
    dataset: str | None = None,
    eval_set: str | Path | None = None,
    kernel_id: str | None = None,
    accelerator: str = "cpu",
    title: str | None = None,
    is_private: bool = True,
    enable_internet: bool = True,
    max_bytes: int = MAX_NOTEBOOK_BYTES,
    session_timeout_s: int | None = None,
    kernel_sources: tuple[str, ...] = (),
) -> PreparedBundle:
    """Build the bundle for ``run_dir`` in memory (nothing is written; see :meth:`PreparedBundle.write`).

    ``config`` defaults to training/configs/sft_tiny.yaml; ``dataset`` and ``eval_set`` to the config's
    ``data.dataset`` / ``data.eval_set``. ``session_timeout_s`` is the Kaggle session timeout the push will ask
    for (kaggle-cli ``kernels push -t/--timeout`` → ``sessionTimeoutSeconds``): baked into the notebook, a full
    run checkpoints and ends ``cut_for_time`` before it. Bad inputs and a notebook over ``max_bytes`` raise
    TunixRtError.
    """
    if mode not in MODES:
        raise TunixRtError(f"--mode {mode!r}: expected one of {', '.join(MODES)}", EXIT_USAGE)
    if session_timeout_s is not None and (isinstance(session_timeout_s, bool)
                                          or not isinstance(session_timeout_s, int) or session_timeout_s <= 0):
        raise TunixRtError(f"session timeout {session_timeout_s!r}: expected a positive number of seconds",
                           EXIT_USAGE)
    run_version = Path(run_dir).resolve().name
    acc = resolve(accelerator)
    config_path = _resolve_path(config or DEFAULT_CONFIG, "config")
    cfg = _load_config(config_path)
    dataset = dataset or cfg.data.dataset
    _check_dataset(dataset)
    if eval_set is not None:
        eval_set_path = _resolve_path(eval_set, "eval set")
    else:
        declared = Path(cfg.data.eval_set)
        eval_set_path = _resolve_path(declared if declared.is_absolute() else paths.training_dir() / declared,
                                      f"{_display(config_path)}: data.eval_set")
    check_eval_set_file(eval_set_path, _display(eval_set_path))  # broken or empty: refused now, not on Kaggle
    model_sources = tuple(
        _check_model_source(s, config_path) for s in [cfg.model.kaggle_model_source] if s
    )
    kernel_id = check_kernel_id(kernel_id or default_kernel_id(run_version))

    files = payload_files(config_path, eval_set_path)
    payload = build_payload(files)
    parameters = {
        "mode": mode,
        "config": payload_name(config_path, "configs"),
        "dataset": dataset,
        "eval_set": payload_name(eval_set_path, "evalsets"),
        "run_version": run_version,
        "session_timeout_s": session_timeout_s,
    }
    notebook = render_notebook(parameters, payload).encode("utf-8")
    if len(notebook) > max_bytes:
        raise TunixRtError(
            f"bundle notebook would be {len(notebook):,} bytes, over the {max_bytes:,}-byte limit "
            f"(payload {len(payload):,} bytes from {len(files)} files); keep weights and large data out of "
            "training/ (attach them as Kaggle model/dataset sources)", EXIT_USAGE)
    metadata = kernel_metadata(kernel_id, acc, title=title, model_sources=model_sources, is_private=is_private,
                               enable_internet=enable_internet, kernel_sources=kernel_sources)
    return PreparedBundle(notebook, metadata, parameters, sha256_bytes(payload), tuple(files),
                          f"training/{parameters['config']}", dataset, f"training/{parameters['eval_set']}",
                          run_version, acc.name)


def adopt_bundle(
    folder: Path,
    run_dir: Path,
    *,
    kernel_id: str,
    accelerator: str,
    title: str | None = None,
    is_private: bool = True,
    enable_internet: bool = True,
    kernel_sources: tuple[str, ...] = (),
) -> PreparedBundle:
    """A bundle folder made elsewhere (``push --bundle DIR``: by ``tunix-rt bundle`` or by hand), read into
    memory with this push's kernel id, title, accelerator and privacy (:func:`kernel_metadata`). For a TPU the
    notebook's own pinned image is dropped too: it would override the TPU VM (kaggle-cli #1197)."""
    folder = Path(folder)
    source, code = read_folder_metadata(folder)
    acc = resolve(accelerator)
    notebook = code.read_bytes()
    if acc.enable_tpu:
        notebook = strip_notebook_pins(notebook)
    try:
        described = load_bundle(folder)
    except TunixRtError:  # a hand-made bundle: no tunix-rt parameters to describe
        described = None
    if described is not None:  # a tunix-rt bundle: its eval set must parse before a session is spent on it
        try:
            payload = extract_payload(code)
        except TunixRtError:
            payload = None  # no payload to check; packaging refuses such a bundle later
        if payload is not None:
            check_payload_eval_set(payload, described.eval_set, str(code))
    metadata = kernel_metadata(check_kernel_id(kernel_id), acc, title=title, is_private=is_private,
                               enable_internet=enable_internet, base=source, kernel_sources=kernel_sources)
    nb_meta = tunix_rt_metadata(notebook)
    return PreparedBundle(
        notebook, metadata, dict(nb_meta["parameters"]) if nb_meta else None,
        str(nb_meta.get("payload_sha256")) if nb_meta else None, (),
        described.config_path if described else None, described.dataset if described else None,
        described.eval_set if described else None, Path(run_dir).resolve().name, acc.name)


@dataclass(frozen=True)
class BundleInputs:
    """What a bundle is made from: the flags of ``bundle``, ``rehearse``, ``push`` and ``run``."""

    mode: str = "smoke"
    config: str | None = None
    dataset: str | None = None
    eval_set: str | None = None
    kernel_id: str | None = None  # None: local/tunix-rt-<run version> (rehearsals)
    accelerator: str = "cpu"
    folder: str | None = None  # ``push --bundle DIR``: that folder instead of a build
    is_private: bool = True
    enable_internet: bool = True
    session_timeout_s: int | None = None  # baked into the notebook (prepare_bundle)
    kernel_sources: tuple[str, ...] = ()  # kernels whose output is attached (a chained session's previous one)

    def prepare(self, run_dir: Path, *, title: str | None = None) -> PreparedBundle:
        """The bundle in memory (:func:`adopt_bundle` of ``folder``, else :func:`prepare_bundle`)."""
        if self.folder:
            return adopt_bundle(Path(self.folder), run_dir, kernel_id=self.kernel_id or "", title=title,
                                accelerator=self.accelerator, is_private=self.is_private,
                                enable_internet=self.enable_internet, kernel_sources=self.kernel_sources)
        return prepare_bundle(run_dir, mode=self.mode, config=self.config, dataset=self.dataset,
                              eval_set=self.eval_set, kernel_id=self.kernel_id, accelerator=self.accelerator,
                              title=title, is_private=self.is_private, enable_internet=self.enable_internet,
                              session_timeout_s=self.session_timeout_s, kernel_sources=self.kernel_sources)


def build_bundle(run_dir: Path, **inputs: Any) -> BundleInfo:
    """:func:`prepare_bundle` and write it into ``<run_dir>/bundle/``; returns what was written."""
    return prepare_bundle(run_dir, **inputs).write(run_dir)


def load_bundle(bundle_dir: Path) -> BundleInfo:
    """Describe an existing bundle folder (``push --bundle DIR``): checks both files and reads the
    parameters the notebook was built with. Raises TunixRtError when it is not a tunix-rt bundle."""
    bundle_dir = Path(bundle_dir).resolve()
    notebook_path, metadata_path = bundle_dir / NOTEBOOK_NAME, bundle_dir / METADATA_NAME
    for path in (notebook_path, metadata_path):
        if not path.is_file():
            raise TunixRtError(f"{path}: missing; build the bundle with `tunix-rt bundle`", EXIT_USAGE)
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        nb_meta = dig(json.loads(notebook_path.read_text(encoding="utf-8")), "metadata", "tunix_rt")
    except (OSError, ValueError, RecursionError) as exc:
        raise TunixRtError(f"{bundle_dir}: unreadable bundle ({exc})", EXIT_USAGE) from None
    if not isinstance(metadata, dict):
        raise TunixRtError(f"{metadata_path}: expected a JSON object", EXIT_USAGE)
    if not isinstance(nb_meta, dict) or not isinstance(nb_meta.get("parameters"), dict):
        raise TunixRtError(f"{notebook_path}: not built by `tunix-rt bundle` (no tunix_rt metadata)",
                           EXIT_USAGE)
    if metadata.get("code_file") != NOTEBOOK_NAME:
        raise TunixRtError(f"{metadata_path}: code_file must be {NOTEBOOK_NAME!r}", EXIT_USAGE)
    params = nb_meta["parameters"]
    shape = metadata.get("machine_shape")
    kind = "tpu" if metadata.get("enable_tpu") else "gpu" if metadata.get("enable_gpu") else "cpu"
    accelerator = shape or kind
    return BundleInfo(
        bundle_dir=bundle_dir,
        notebook_path=notebook_path,
        metadata_path=metadata_path,
        sha256=sha256_file(notebook_path),
        metadata_sha256=sha256_file(metadata_path),
        size_bytes=notebook_path.stat().st_size,
        payload_sha256=str(nb_meta.get("payload_sha256", "")),
        payload_files=(),
        kernel_id=str(metadata.get("id", "")),
        mode=str(params.get("mode")),
        config=str(params.get("config")),
        config_path=f"training/{params.get('config')}",
        dataset=str(params.get("dataset")),
        eval_set=f"training/{params.get('eval_set')}",
        run_version=str(params.get("run_version")),
        accelerator=accelerator,
        model_sources=tuple(metadata.get("model_sources") or ()),
        session_timeout_s=params.get("session_timeout_s"),
    )
