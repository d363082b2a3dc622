"""Kernels, versions and their outputs, kept on disk under the emulator's data folder.

``<data>/kernels/<owner>/<slug>/kernel.json`` holds the kernel (id, title, latest metadata);
``<data>/kernels/<owner>/<slug>/v<N>/`` holds one pushed version (see executor.py for its layout) and
``version.json`` (status, times, the SaveKernel request without its ``text``). A restarted emulator
reloads them; a version that was still running is marked ERROR.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunix_rt.fsutil import read_json, write_atomic, write_json_atomic
from tunix_rt.kernel_status import TERMINAL, KernelStatus

FIRST_KERNEL_ID = 4242


@dataclass
class Version:
    owner: str
    slug: str
    number: int
    kernel_type: str  # "notebook" | "script"
    language: str
    status: str = KernelStatus.QUEUED
    failure_message: str = ""
    pushed_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    session_timeout_s: float | None = None
    request: dict[str, Any] = field(default_factory=dict)  # the SaveKernel body without "text"
    extra_outputs: list[str] = field(default_factory=list)  # injected names (test hook), in order
    dir: Path = Path()

    @property
    def label(self) -> str:
        return f"v{self.number}"

    @property
    def source(self) -> Path:
        return self.dir / ("source.py" if self.kernel_type == "script" else "source.ipynb")

    @property
    def working_dir(self) -> Path:
        return self.dir / "working"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.json"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("dir")
        return data


@dataclass
class Kernel:
    owner: str
    slug: str
    kernel_id: int
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)  # latest SaveKernel body without "text"
    versions: dict[int, Version] = field(default_factory=dict)
    stale_remaining: int = 0  # status answers still to be served from the previous version

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.slug}"

    def latest(self) -> Version | None:
        return self.versions[max(self.versions)] if self.versions else None


class Store:
    """Thread-safe index over the data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve()
        self.kernels_dir = self.root / "kernels"
        self.blobs_dir = self.root / "blobs"
        self.lock = threading.RLock()
        self._kernels: dict[tuple[str, str], Kernel] = {}
        self._load()

    # ---- loading and saving ----------------------------------------------------------------------

    def _load(self) -> None:
        if not self.kernels_dir.is_dir():
            return
        for kfile in sorted(self.kernels_dir.glob("*/*/kernel.json")):
            data = read_json(kfile)
            kernel = Kernel(
                data["owner"],
                data["slug"],
                int(data["kernel_id"]),
                data.get("title", ""),
                data.get("metadata", {}),
            )
            for vfile in sorted(kfile.parent.glob("v*/version.json")):
                v = Version(**{**read_json(vfile), "dir": vfile.parent})
                if not v.finished:  # the run died with the previous emulator process
                    v.status, v.failure_message = KernelStatus.ERROR, "The session was lost (emulator restarted)."
                    self.save_version(v)
                kernel.versions[v.number] = v
            self._kernels[(kernel.owner, kernel.slug)] = kernel

    def _save_kernel(self, kernel: Kernel) -> None:
        write_json_atomic(
            self.kernels_dir / kernel.owner / kernel.slug / "kernel.json",
            {
                "owner": kernel.owner,
                "slug": kernel.slug,
                "kernel_id": kernel.kernel_id,
                "title": kernel.title,
                "metadata": kernel.metadata,
            },
        )

    def save_version(self, version: Version) -> None:
        write_json_atomic(version.dir / "version.json", version.to_json())

    # ---- kernels and versions --------------------------------------------------------------------

    def kernel(self, owner: str, slug: str) -> Kernel | None:
        with self.lock:
            return self._kernels.get((owner, slug))

    def kernel_by_id(self, kernel_id: int) -> Kernel | None:
        with self.lock:
            return next((k for k in self._kernels.values() if k.kernel_id == kernel_id), None)

    def kernels(self) -> list[Kernel]:
        with self.lock:
            return sorted(self._kernels.values(), key=lambda k: k.kernel_id)

    def version(self, owner: str, slug: str, number: int | None = None) -> Version | None:
        """A version by number, or the latest one when ``number`` is None."""
        with self.lock:
            kernel = self._kernels.get((owner, slug))
            if kernel is None:
                return None
            return kernel.latest() if number is None else kernel.versions.get(number)

    def create_version(
        self,
        owner: str,
        slug: str,
        *,
        title: str,
        kernel_type: str,
        language: str,
        text: str,
        request: dict[str, Any],
        session_timeout_s: float | None,
        status: str = KernelStatus.QUEUED,
    ) -> tuple[Kernel, Version]:
        """Record a push: a new kernel if needed, the next version number, its source on disk."""
        with self.lock:
            kernel = self._kernels.get((owner, slug))
            if kernel is None:
                next_id = max((k.kernel_id for k in self._kernels.values()), default=FIRST_KERNEL_ID - 1) + 1
                kernel = Kernel(owner, slug, next_id)
                self._kernels[(owner, slug)] = kernel
            kernel.title = title or kernel.title or slug
            kernel.metadata = request
            number = max(kernel.versions, default=0) + 1
            vdir = self.kernels_dir / owner / slug / f"v{number}"
            version = Version(
                owner,
                slug,
                number,
                kernel_type,
                language,
                status=status,
                pushed_at=time.time(),
                session_timeout_s=session_timeout_s,
                request=request,
                dir=vdir,
            )
            (vdir / "working").mkdir(parents=True, exist_ok=True)
            (vdir / "input").mkdir(parents=True, exist_ok=True)
            write_atomic(version.source, text)
            kernel.versions[number] = version
            self.save_version(version)
            self._save_kernel(kernel)
            return kernel, version

    def latest_output(self, kernel: Kernel) -> Path | None:
        """The working folder (= outputs) of the kernel's latest COMPLETE version, or None."""
        with self.lock:
            done = [n for n, v in kernel.versions.items() if v.status == KernelStatus.COMPLETE]
            return kernel.versions[max(done)].working_dir if done else None

    def update(self, version: Version, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(version, key, value)
            self.save_version(version)

    # ---- outputs ---------------------------------------------------------------------------------

    def output_names(self, version: Version) -> list[str]:
        """Every file in the version's working folder (sub-folders included; links listed, not followed),
        then any injected entries. Nothing before the session has finished."""
        if not version.finished:
            return []
        names: list[str] = []
        root = version.working_dir
        for dirpath, dirnames, filenames in os.walk(root):
            rel = Path(dirpath).relative_to(root)
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                names.append((rel / name).as_posix())
            dirnames.sort()
        return sorted(names) + list(version.extra_outputs)

    def add_extra_output(self, version: Version, name: str, data: bytes) -> None:
        """Test hook: list ``name`` (any string, hostile ones included) with ``data`` as its content."""
        with self.lock:
            write_atomic(self._extra_path(version, name), data)
            version.extra_outputs.append(name)
            self.save_version(version)

    def _extra_path(self, version: Version, name: str) -> Path:
        key = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") or "_"
        if len(key) > 200:  # a hostile name too long for a file name of its own: its digest instead
            key = "sha256-" + hashlib.sha256(name.encode()).hexdigest()
        return version.dir / "extra_outputs" / key

    def read_output(self, version: Version, name: str) -> tuple[Path | bytes, int, float] | None:
        """(file path or content, size, mtime) of an output entry. A link's content is its target path:
        links are never followed, so nothing outside the working folder is ever served."""
        if name in version.extra_outputs:
            path = self._extra_path(version, name)
            st = path.stat()
            return path, st.st_size, st.st_mtime
        if name not in self.output_names(version):
            return None
        path = version.working_dir / name
        if path.is_symlink():
            target = os.readlink(path).encode()
            return target, len(target), path.lstat().st_mtime
        real_root = os.path.realpath(version.working_dir)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root or not path.is_file():
            return None
        st = path.stat()
        return path, st.st_size, st.st_mtime

    # ---- blob URLs -------------------------------------------------------------------------------

    @staticmethod
    def blob_token(version: Version, name: str, expires: float | None) -> str:
        """An opaque, URL-safe token naming one output file (like a signed URL's path)."""
        raw = json.dumps([version.owner, version.slug, version.number, name, expires], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def parse_blob_token(token: str) -> tuple[str, str, int, str, float | None] | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            owner, slug, number, name, expires = json.loads(raw)
            return str(owner), str(slug), int(number), str(name), expires
        except (ValueError, TypeError):
            return None
