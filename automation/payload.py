"""The kernel notebook's embedded payload: what the kernel trains with, as one deterministic tar.gz inside the
notebook (bundle.py builds the notebook with it; package.py unpacks it into the submission zip).

The payload holds ``training/`` (code, configs, datasets, tokenizer, eval sets) and ``kernel/requirements*.txt``;
caches and anything that smells of credentials are never embedded. Deterministic: sorted tar entries, mtime 0,
uid/gid 0 with empty owner names, mode 0644, gzip header without a name or time. :func:`render_notebook` fills
the template's two tagged cells (papermill's ``parameters`` and ``tunix-rt-payload``) and writes canonical
nbformat 4 JSON; :func:`extract_payload` reads the payload back, checked against its recorded sha256.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import paths
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import dig, sha256_bytes
from .layout import NOTEBOOK_NAME

PARAMETERS_TAG = "parameters"  # papermill's tag
PAYLOAD_TAG = "tunix-rt-payload"
BUNDLE_FORMAT = 1

_B64_LINE = 1000  # characters per line of the base64 payload inside the notebook cell
# Never embedded, whatever sits in the source folders: caches and anything that smells of credentials.
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
_SKIP_NAMES = re.compile(r"(^\.|\.py[co]$|^kaggle\.json$|^access_token$|\.env$|\.netrc$|\.pem$|\.key$)")


def payload_name(path: Path, folder: str) -> str:
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
    files[f"training/{payload_name(config_path, 'configs')}"] = config_path
    files[f"training/{payload_name(eval_set_path, 'evalsets')}"] = eval_set_path
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

    template = template or paths.kernel_dir() / NOTEBOOK_NAME
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




def extract_payload(notebook_path: Path) -> bytes:
    """The embedded payload (tar.gz bytes) of a bundle notebook, checked against its recorded sha256."""
    try:
        nb = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise TunixRtError(f"{notebook_path}: unreadable notebook ({exc})", EXIT_USAGE) from None
    cells = [c for c in (dig(nb, "cells") or []) if PAYLOAD_TAG in (dig(c, "metadata", "tags") or [])]
    source = dig(cells[0], "source") if len(cells) == 1 else ""
    source = "".join(x for x in source if isinstance(x, str)) if isinstance(source, list) else str(source or "")
    found = re.search(r'PAYLOAD_SHA256 = "([0-9a-f]*)"\s*PAYLOAD_B64 = """([A-Za-z0-9+/=\s]*)"""', source)
    if not found or not found.group(2).strip():
        raise TunixRtError(f"{notebook_path}: no embedded payload (not built by `tunix-rt bundle`)",
                           EXIT_USAGE)
    payload = base64.b64decode("".join(found.group(2).split()))
    if sha256_bytes(payload) != found.group(1):
        raise TunixRtError(f"{notebook_path}: embedded payload does not match its sha256", EXIT_USAGE)
    return payload
