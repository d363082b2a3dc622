"""Build the pushable kernel folder ``<run-dir>/bundle/``: ``kernel-metadata.json`` + the kernel notebook.

The notebook is ``kernel/kaggle_submission.ipynb`` with two cells filled in: the papermill ``parameters``
cell (mode, config, dataset, eval set, run version, session timeout) and the payload cell, a base64
deterministic tar.gz of everything the kernel trains with (``training/`` code, configs, datasets, tokenizer,
eval sets, and ``kernel/requirements*.txt``). The kernel unpacks it into a temporary folder on start, so it
needs nothing but the notebook (and, for real Gemma weights, the ``model_sources`` Kaggle mounts).

Deterministic: the same inputs give the same bytes (sorted tar entries, mtime 0, uid/gid 0, fixed modes,
gzip mtime 0, fixed cell ids, canonical nbformat JSON). The notebook's sha256 identifies the code that runs;
it is recorded in ``run_state.json`` and, through evidence, in ``run_manifest.json``.

Size limit: Kaggle documents no maximum for a pushed notebook; the client sends the whole notebook as one
string inside one JSON request, and Kaggle's editor has to open it. We refuse notebooks over
``MAX_NOTEBOOK_BYTES`` = 8 MiB (8,388,608 bytes) — far above our bundle (well under 1 MB: the payload is
code, a 550-trace dataset and a 512-token tokenizer) and low enough to stay clear of request-size caps.
Model weights never go into the bundle: they come through ``model_sources``.

Kernel id: ``--kernel-id OWNER/SLUG``; without it ``local/tunix-rt-<run_version, slugified>`` (e.g.
``local/tunix-rt-m33-rehearsal``). That default serves rehearsals, which never reach Kaggle; ``push``
requires ``--kernel-id``. The title is the slug itself, so Kaggle's slug check always agrees.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths, runstate
from .accelerators import Accelerator, resolve
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import dumps_json, sha256_bytes, sha256_file, write_atomic

MAX_NOTEBOOK_BYTES = 8 * 1024 * 1024
NOTEBOOK_NAME = "kaggle_submission.ipynb"
METADATA_NAME = "kernel-metadata.json"
TEMPLATE_NAME = "kaggle_submission.ipynb"
PARAMETERS_TAG = "parameters"  # papermill's tag
PAYLOAD_TAG = "tunix-rt-payload"
DEFAULT_KERNEL_OWNER = "local"
DEFAULT_CONFIG = "training/configs/sft_tiny.yaml"
MODES = ("smoke", "full")
BUNDLE_FORMAT = 1

_B64_LINE = 1000  # characters per line of the base64 payload inside the notebook cell
# Never embedded, whatever sits in the source folders: caches and anything that smells of credentials.
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
_SKIP_NAMES = re.compile(r"(^\.|\.py[co]$|^kaggle\.json$|^access_token$|\.env$|\.netrc$|\.pem$|\.key$)")


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

    def state_record(self) -> dict[str, Any]:
        """The ``bundle`` block of run_state.json."""
        return {
            "sha256": self.sha256,
            "metadata_sha256": self.metadata_sha256,
            "size_bytes": self.size_bytes,
            "payload_sha256": self.payload_sha256,
            "config_path": self.config_path,
            "dataset": self.dataset,
            "eval_set": self.eval_set,
            "mode": self.mode,
            "kernel_id": self.kernel_id,
            "path": f"{runstate.BUNDLE_DIR}/{NOTEBOOK_NAME}",
        }


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


def _payload_name(path: Path, folder: str) -> str:
    """Where ``path`` sits in the payload's training/ folder: its own place when it lives in training/,
    else ``<folder>/<file name>`` (a config or eval set from elsewhere is shipped next to the stock ones)."""
    try:
        return path.relative_to(paths.training_dir()).as_posix()
    except ValueError:
        name = f"{folder}/{path.name}"
        stock = paths.training_dir() / name
        if stock.exists() and stock.read_bytes() != path.read_bytes():
            raise TunixRtError(
                f"{path}: its name collides with training/{name} (different content); rename the file",
                EXIT_USAGE,
            ) from None
        return name


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
    from slugify import slugify  # python-slugify, the same function the kaggle client checks titles with

    return f"{DEFAULT_KERNEL_OWNER}/{slugify(f'tunix-rt-{run_version}')}"


def _check_kernel_id(kernel_id: str) -> str:
    from .kernel_id import check  # the one kernel-id rule (push and run use it too)

    return check(kernel_id)


def _check_model_source(source: str, config_path: Path) -> str:
    parts = source.split("/")
    if len(parts) != 5 or not all(parts):
        raise TunixRtError(
            f"{_display(config_path)}: model.kaggle_model_source {source!r}: expected "
            "owner/model/framework/variation/version", EXIT_USAGE)
    return source


# -------------------------------------------------------------------------------------------- payload


def payload_files(config_path: Path, eval_set_path: Path) -> dict[str, Path]:
    """The files the kernel needs, by their name in the payload (``training/…``, ``kernel/requirements*.txt``).

    All of ``training/`` that the training code reads: every ``*.py`` (the entry scripts import their
    siblings), ``configs/``, ``datasets/``, ``tokenizer/``, ``evalsets/``; plus the chosen config and eval
    set when they live outside the checkout's training/ folder.
    """
    train = paths.training_dir()
    files: dict[str, Path] = {}

    def add(path: Path) -> None:
        rel = path.relative_to(train)
        if any(part in _SKIP_DIRS or _SKIP_NAMES.search(part) for part in rel.parts):
            return
        files[f"training/{rel.as_posix()}"] = path

    for path in sorted(train.rglob("*.py")):
        add(path)
    for folder in ("configs", "datasets", "tokenizer", "evalsets"):
        for path in sorted((train / folder).rglob("*")):
            if path.is_file():
                add(path)
    files[f"training/{_payload_name(config_path, 'configs')}"] = config_path
    files[f"training/{_payload_name(eval_set_path, 'evalsets')}"] = eval_set_path
    for name in ("requirements.txt", "requirements-gpu.txt"):  # the GPU file: CUDA JAX when a GPU is visible
        requirements = paths.kernel_dir() / name
        if not requirements.is_file():
            raise TunixRtError(f"{requirements}: missing (the kernel's pinned requirements)", EXIT_USAGE)
        files[f"kernel/{name}"] = requirements
    return dict(sorted(files.items()))


def build_payload(files: Mapping[str, Path]) -> bytes:
    """A deterministic tar.gz of ``files`` (name → source): sorted names, mtime 0, uid/gid 0 with empty
    owner names, modes 0644, ustar format, gzip header without a name or time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            data = Path(files[name]).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


# ------------------------------------------------------------------------------------------- notebook


def _payload_source(payload: bytes) -> str:
    b64 = base64.b64encode(payload).decode("ascii")
    lines = "\n".join(b64[i:i + _B64_LINE] for i in range(0, len(b64), _B64_LINE))
    return (
        "# Embedded payload, written by `tunix-rt bundle`: a deterministic tar.gz (base64) of\n"
        "# training/ (code, configs, datasets, tokenizer, eval sets) and kernel/requirements*.txt.\n"
        f'PAYLOAD_SHA256 = "{sha256_bytes(payload)}"\n'
        f'PAYLOAD_B64 = """\n{lines}\n"""'
    )


def _parameters_source(parameters: Mapping[str, Any]) -> str:
    from papermill.translators import translate_parameters

    return translate_parameters("python", "python", dict(parameters), "Parameters").rstrip("\n")


def _tagged_cell(nb: Any, tag: str, template: Path) -> Any:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise TunixRtError(f"{template}: expected exactly one cell tagged {tag!r}, found {len(cells)}",
                           EXIT_USAGE)
    return cells[0]


def render_notebook(parameters: Mapping[str, Any], payload: bytes, *, template: Path | None = None) -> str:
    """The kernel notebook with ``parameters`` baked into its parameters cell and ``payload`` embedded, as
    canonical nbformat 4 JSON text (sorted keys, the template's fixed cell ids, trailing newline)."""
    import nbformat

    template = template or paths.kernel_dir() / TEMPLATE_NAME
    nb = nbformat.reads(template.read_text(encoding="utf-8"), as_version=4)
    _tagged_cell(nb, PARAMETERS_TAG, template).source = _parameters_source(parameters)
    _tagged_cell(nb, PAYLOAD_TAG, template).source = _payload_source(payload)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata["tunix_rt"] = {
        "bundle_format": BUNDLE_FORMAT,
        "parameters": dict(parameters),
        "payload_sha256": sha256_bytes(payload),
    }
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def kernel_metadata(
    kernel_id: str,
    accelerator: Accelerator,
    *,
    model_sources: tuple[str, ...] = (),
    is_private: bool = True,
    enable_internet: bool = True,
) -> dict[str, Any]:
    """kernel-metadata.json for ``kaggle kernels push`` (fields: Kaggle's kernel-metadata docs)."""
    return {
        "id": kernel_id,
        "title": kernel_id.partition("/")[2],  # = the slug, so Kaggle's title/slug check agrees
        "code_file": NOTEBOOK_NAME,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": is_private,
        "enable_internet": enable_internet,
        **accelerator.metadata_fields(),
        "dataset_sources": [],
        "competition_sources": [],
        "kernel_sources": [],
        "model_sources": list(model_sources),
        "keywords": [],
    }


# --------------------------------------------------------------------------------------------- bundle


def build_bundle(
    run_dir: Path,
    *,
    mode: str = "smoke",
    config: str | Path | None = None,
    dataset: str | None = None,
    eval_set: str | Path | None = None,
    kernel_id: str | None = None,
    accelerator: str = "cpu",
    is_private: bool = True,
    enable_internet: bool = True,
    max_bytes: int = MAX_NOTEBOOK_BYTES,
    record: bool = True,
    session_timeout_s: int | None = None,
) -> BundleInfo:
    """Build ``<run_dir>/bundle/`` and (``record``) note it in run_state.json; returns what was built.

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
    run_dir = Path(run_dir).resolve()
    run_version = run_dir.name
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
    model_sources = tuple(
        _check_model_source(s, config_path) for s in [cfg.model.kaggle_model_source] if s
    )
    kernel_id = _check_kernel_id(kernel_id or default_kernel_id(run_version))

    files = payload_files(config_path, eval_set_path)
    payload = build_payload(files)
    parameters = {
        "mode": mode,
        "config": _payload_name(config_path, "configs"),
        "dataset": dataset,
        "eval_set": _payload_name(eval_set_path, "evalsets"),
        "run_version": run_version,
        "session_timeout_s": session_timeout_s,
    }
    notebook = render_notebook(parameters, payload).encode("utf-8")
    if len(notebook) > max_bytes:
        raise TunixRtError(
            f"bundle notebook would be {len(notebook):,} bytes, over the {max_bytes:,}-byte limit "
            f"(payload {len(payload):,} bytes from {len(files)} files); keep weights and large data out of "
            "training/ (attach them as Kaggle model/dataset sources)", EXIT_USAGE)
    metadata = dumps_json(kernel_metadata(kernel_id, acc, model_sources=model_sources, is_private=is_private,
                                          enable_internet=enable_internet)).encode("utf-8")

    bundle_dir = run_dir / runstate.BUNDLE_DIR
    notebook_path = write_atomic(bundle_dir / NOTEBOOK_NAME, notebook)
    metadata_path = write_atomic(bundle_dir / METADATA_NAME, metadata)
    info = BundleInfo(
        bundle_dir=bundle_dir,
        notebook_path=notebook_path,
        metadata_path=metadata_path,
        sha256=sha256_bytes(notebook),
        metadata_sha256=sha256_bytes(metadata),
        size_bytes=len(notebook),
        payload_sha256=sha256_bytes(payload),
        payload_files=tuple(files),
        kernel_id=kernel_id,
        mode=mode,
        config=parameters["config"],
        config_path=f"training/{parameters['config']}",
        dataset=dataset,
        eval_set=f"training/{parameters['eval_set']}",
        run_version=run_version,
        accelerator=acc.name,
        model_sources=model_sources,
        session_timeout_s=session_timeout_s,
    )
    if record:
        runstate.update(run_dir, run_version=run_version, mode=mode, accelerator=acc.name,
                        bundle=info.state_record())
        runstate.mark_stage(run_dir, "bundle", "done", sha256=info.sha256)
    return info


def extract_payload(notebook_path: Path) -> bytes:
    """The embedded payload (tar.gz bytes) of a bundle notebook, checked against its recorded sha256."""
    import json

    try:
        nb = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunixRtError(f"{notebook_path}: unreadable notebook ({exc})", EXIT_USAGE) from None
    cells = [c for c in nb.get("cells", []) if PAYLOAD_TAG in c.get("metadata", {}).get("tags", [])]
    source = "".join(cells[0]["source"]) if len(cells) == 1 else ""
    found = re.search(r'PAYLOAD_SHA256 = "([0-9a-f]*)"\s*PAYLOAD_B64 = """([A-Za-z0-9+/=\s]*)"""', source)
    if not found or not found.group(2).strip():
        raise TunixRtError(f"{notebook_path}: no embedded payload (not built by `tunix-rt bundle`)",
                           EXIT_USAGE)
    payload = base64.b64decode("".join(found.group(2).split()))
    if sha256_bytes(payload) != found.group(1):
        raise TunixRtError(f"{notebook_path}: embedded payload does not match its sha256", EXIT_USAGE)
    return payload


def load_bundle(bundle_dir: Path) -> BundleInfo:
    """Describe an existing bundle folder (``push --bundle DIR``): checks both files and reads the
    parameters the notebook was built with. Raises TunixRtError when it is not a tunix-rt bundle."""
    import json

    bundle_dir = Path(bundle_dir).resolve()
    notebook_path, metadata_path = bundle_dir / NOTEBOOK_NAME, bundle_dir / METADATA_NAME
    for path in (notebook_path, metadata_path):
        if not path.is_file():
            raise TunixRtError(f"{path}: missing; build the bundle with `tunix-rt bundle`", EXIT_USAGE)
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        nb_meta = json.loads(notebook_path.read_text(encoding="utf-8")).get("metadata", {}).get("tunix_rt")
    except (OSError, ValueError) as exc:
        raise TunixRtError(f"{bundle_dir}: unreadable bundle ({exc})", EXIT_USAGE) from None
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
