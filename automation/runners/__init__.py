"""Runners turn a run directory's bundle into its outputs: one protocol for local, Docker and Kaggle.

Every runner leaves the same shape: ``<run-dir>/outputs/`` is the kernel's working directory
(``/kaggle/working``) and ``<run-dir>/raw_log/`` holds the console log. Evidence reads only those, plus the
run state. A runner is the stages (engine.py) that get from the inputs to those outputs:

* ``local`` and ``docker`` (:class:`ProcessRunner`): ``bundle`` → ``execute`` — the notebook runs on this
  machine, with papermill in a subprocess (local.py) or in a Kaggle-like container (docker.py);
* ``kaggle`` (kaggle.py): ``preflight`` → ``bundle`` → ``push`` → ``wait`` → ``pull`` — it runs on Kaggle.

The flows add the same tail to any runner: ``evidence`` → ``validate`` (→ ``package``). The Kaggle emulator's
executor is not a third runner: it runs pushed versions with the local runner's process code (local.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from ..layout import OUTPUTS_DIR, RAW_LOG_DIR

if TYPE_CHECKING:
    from ..bundle import BundleInputs
    from ..engine import Stage

BACKENDS = ("auto", "docker", "local")
# A Kaggle session's RAM: the "Technical Specifications" of Kaggle's notebook docs (kaggle.com/docs/notebooks,
# as quoted in public summaries: 4 CPU cores and 30 GB of RAM per session), and the machine wandb records on
# Kaggle T4 x2 and P100 sessions (public wandb-metadata.json files: "memory": {"total": 31.36} GB, 4 logical
# CPUs). The container gets 30g and no swap, so a rehearsal that fits here fits there.
DEFAULT_MEMORY = "30g"
DEFAULT_PIDS_LIMIT = 8192  # processes + threads in the container (JAX alone starts a few hundred threads)


@dataclass(frozen=True)
class RunOutcome:
    """What a process runner reports about one notebook execution."""

    backend: str  # "local" | "docker"
    exit_code: int  # 0 = the notebook ran to the end
    outputs_dir: Path  # the kernel's working directory after the run
    log_path: Path  # raw console log (plain text for local/docker)
    wall_s: float  # wall time of the execution
    detail: str = ""  # one line: why it failed, which image, …

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RunnerOptions:
    """How a process runner runs the notebook (the Docker fields apply to the docker backend only)."""

    image: str | None = None  # an existing image tag; None builds (or reuses) the default image
    base_image: str | None = None  # FROM of that default image; None: $TUNIX_RT_BASE_IMAGE or the Dockerfile's
    network: str = "none"
    gpus: str | None = None  # all, a count or device=ID,…; None: no GPU
    jax_cache: str | None = None  # a folder or "off"; None: $TUNIX_RT_JAX_CACHE or ~/.cache/tunix-rt/jax
    memory: str = DEFAULT_MEMORY  # the container's memory limit (docker --memory; swap none)
    pids_limit: int = DEFAULT_PIDS_LIMIT

    @property
    def docker_only(self) -> bool:
        """Flags that only the docker backend reads were given."""
        return bool(self.image or self.base_image or self.gpus or self.network != "none")


def clear_previous_run(run_dir: Path) -> None:
    """A rerun must not read the last run's outputs as its own: drop outputs/ and raw_log/ (not committed)."""
    for name in (OUTPUTS_DIR, RAW_LOG_DIR):
        folder = Path(run_dir) / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)


class Runner(Protocol):
    """The stages that take a run from its inputs to ``outputs/`` + ``raw_log/``."""

    name: str

    def stages(self, inputs: BundleInputs) -> Sequence[Stage]: ...


class ProcessRunner:
    """A runner that executes the bundle's notebook on this machine: ``bundle`` → ``execute``."""

    name = ""

    def __init__(self, options: RunnerOptions | None = None) -> None:
        self.options = options or RunnerOptions()

    def execute(self, bundle_dir: Path, run_dir: Path, stream: TextIO | None) -> RunOutcome:
        """Run ``<bundle_dir>``'s notebook with the kernel's working directory ``<run_dir>/outputs``."""
        raise NotImplementedError

    def stages(self, inputs: BundleInputs) -> list[Stage]:
        from ..stages import BundleStage, ExecuteStage

        return [BundleStage(inputs), ExecuteStage(self)]


class LocalRunner(ProcessRunner):
    """papermill in a subprocess, in Kaggle's layout (local.py)."""

    name = "local"

    def execute(self, bundle_dir: Path, run_dir: Path, stream: TextIO | None) -> RunOutcome:
        from .local import run_local

        return run_local(bundle_dir, run_dir, jax_cache=self.options.jax_cache, stream=stream)


class DockerRunner(ProcessRunner):
    """papermill in the repository's kernel image, in a Kaggle-like container (docker.py)."""

    name = "docker"

    def execute(self, bundle_dir: Path, run_dir: Path, stream: TextIO | None) -> RunOutcome:
        from .docker import run_docker

        o = self.options
        return run_docker(bundle_dir, run_dir, image=o.image, base_image=o.base_image, network=o.network,
                          gpus=o.gpus, jax_cache=o.jax_cache, stream=stream, memory=o.memory,
                          pids_limit=o.pids_limit)


class AutoRunner(ProcessRunner):
    """``--backend auto`` when a Docker daemon answered: Docker, and the local runner when Docker cannot give
    the notebook a container (no image can be built, found or started: ``DockerSetupError``), saying why in
    one line through ``say``. An explicit ``--backend docker`` never falls back."""

    name = "docker"

    def __init__(self, options: RunnerOptions | None = None, *, say: Callable[[str], None]) -> None:
        super().__init__(options)
        self.say = say

    def execute(self, bundle_dir: Path, run_dir: Path, stream: TextIO | None) -> RunOutcome:
        from .docker import DockerSetupError

        try:
            return DockerRunner(self.options).execute(bundle_dir, run_dir, stream)
        except DockerSetupError as exc:
            # auto promised a rehearsal, not Docker: run the same bundle locally, from a clean slate.
            self.say(f"backend: local (auto: falling back, {exc.message})")
            clear_previous_run(run_dir)
            return LocalRunner(self.options).execute(bundle_dir, run_dir, stream)


RUNNERS: dict[str, Callable[[RunnerOptions | None], ProcessRunner]] = {"local": LocalRunner, "docker": DockerRunner}


def process_runner(backend: str, options: RunnerOptions | None = None) -> ProcessRunner:
    """The process runner registered as ``backend`` ("local" | "docker")."""
    return RUNNERS[backend](options)
