"""``kernel-metadata.json``: the one place its fields are decided, and reading a bundle folder made elsewhere.

``kaggle kernels push`` reads the metadata from the pushed folder (fields: kaggle-cli docs/kernels_metadata.md).
bundle.py writes it once, from :func:`kernel_metadata`; ``push --bundle DIR`` keeps a hand-made folder's code
file, sources and keywords and replaces the rest (:func:`read_folder_metadata`, then :func:`kernel_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .accelerators import Accelerator
from .errors import EXIT_USAGE, TunixRtError
from .fsutil import dig, dumps_json
from .layout import METADATA_NAME, NOTEBOOK_NAME

# What the push decides, whatever a hand-made folder's metadata says.
_DECIDED = ("id", "id_no", "title", "machine_shape", "docker_image", "docker_image_pinning_type", "enable_gpu",
            "enable_tpu", "is_private", "enable_internet")


def kernel_metadata(
    kernel_id: str,
    accelerator: Accelerator,
    *,
    title: str | None = None,
    model_sources: tuple[str, ...] = (),
    kernel_sources: tuple[str, ...] = (),
    is_private: bool = True,
    enable_internet: bool = True,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """kernel-metadata.json for ``kaggle kernels push`` (fields: kaggle-cli docs/kernels_metadata.md).

    ``title``: an existing kernel's title, kept so the push does not rename it; None for a new kernel, whose
    title is its slug (Kaggle derives the slug from the title; kernel_id.py). ``base``: the metadata of a
    hand-made bundle folder, whose code file, sources and keywords are kept; its id, title, machine and
    privacy fields are replaced by these. TPU: no pinned docker image at all (kaggle-cli #1197).
    ``kernel_sources``: kernels whose latest output Kaggle attaches read-only under ``/kaggle/input/<slug>/``
    (kaggle-cli docs/kernels_metadata.md "kernel_sources"; the client sends them as SaveKernel's
    ``kernelDataSources``, kagglesdk ``ApiSaveKernelRequest.kernel_data_sources``): a chained session's previous
    session (chain.py)."""
    meta: dict[str, Any] = {
        "code_file": NOTEBOOK_NAME, "language": "python", "kernel_type": "notebook",
        "dataset_sources": [], "competition_sources": [], "kernel_sources": [], "model_sources": [],
        "keywords": [],
    }
    if base:
        meta.update({k: v for k, v in base.items() if k not in _DECIDED})
    meta.update({
        "id": kernel_id,
        "title": title or kernel_id.partition("/")[2],
        "is_private": is_private,
        "enable_internet": enable_internet,
        **accelerator.metadata_fields(),
        "model_sources": list(model_sources) or list(meta.get("model_sources") or []),
        "kernel_sources": list(kernel_sources) or list(meta.get("kernel_sources") or []),
    })
    return meta


def read_folder_metadata(folder: Path) -> tuple[dict[str, Any], Path]:
    """A bundle folder's metadata and code file (``push --bundle DIR``); one line when either is missing."""
    meta_path = Path(folder) / METADATA_NAME
    try:
        source = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError:
        raise TunixRtError(f"--bundle {folder}: no {METADATA_NAME} in that folder", EXIT_USAGE) from None
    except (ValueError, RecursionError) as exc:
        raise TunixRtError(f"{meta_path}: unreadable kernel metadata ({type(exc).__name__})", EXIT_USAGE) from None
    if not isinstance(source, dict) or not source.get("code_file"):
        raise TunixRtError(f"{meta_path}: kernel metadata needs a code_file", EXIT_USAGE)
    name = str(source["code_file"])
    code = Path(folder) / name
    if PurePosixPath(name).name != name or not code.is_file():
        raise TunixRtError(f"{meta_path}: code_file {name!r} is not in the bundle", EXIT_USAGE)
    return source, code


def tunix_rt_metadata(notebook: bytes) -> dict[str, Any] | None:
    """The ``tunix_rt`` block a bundle notebook carries (its parameters, payload sha256), or None."""
    try:
        meta = dig(json.loads(notebook), "metadata", "tunix_rt")
    except (ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("parameters"), dict) else None


def strip_notebook_pins(notebook: bytes) -> bytes:
    """A pinned image in the notebook's own metadata also overrides the TPU VM (#1197): drop it."""
    try:
        nb = json.loads(notebook)
    except (ValueError, RecursionError):
        return notebook  # load_bundle refuses it in one line
    kaggle_meta = dig(nb, "metadata", "kaggle")
    if isinstance(kaggle_meta, dict) and {"dockerImageVersionId", "accelerator"} & kaggle_meta.keys():
        kaggle_meta.pop("dockerImageVersionId", None)
        kaggle_meta.pop("accelerator", None)
        return dumps_json(nb).encode("utf-8")
    return notebook
