"""The runner registry and auto's fallback: Docker that cannot give the notebook a container hands the same
bundle to the local runner, saying why in one line; an explicit docker backend does not fall back."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunix_rt.runners import AutoRunner, DockerRunner, LocalRunner, RunnerOptions, RunOutcome, process_runner
from tunix_rt.runners.docker import DockerSetupError


def test_the_registry_names_the_process_runners() -> None:
    options = RunnerOptions(jax_cache="off")
    assert isinstance(process_runner("local", options), LocalRunner)
    docker = process_runner("docker", options)
    assert isinstance(docker, DockerRunner) and docker.options is options
    assert RunnerOptions(base_image="x").docker_only and not RunnerOptions(jax_cache="off").docker_only


def test_auto_falls_back_from_docker_to_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "r"

    def docker_fails(self: DockerRunner, bundle_dir: Path, run: Path, stream: object) -> RunOutcome:
        (run / "outputs").mkdir(parents=True)
        (run / "outputs" / "half-written").write_text("x")
        raise DockerSetupError("docker build of tunix-rt/kernel:abc at unix:///x failed: no base image")

    def local_runs(self: LocalRunner, bundle_dir: Path, run: Path, stream: object) -> RunOutcome:
        assert not (run / "outputs").exists()  # Docker's leftovers were cleared first
        return RunOutcome("local", 0, run / "outputs", run / "raw_log" / "console.log", 1.0, "papermill exit 0")

    monkeypatch.setattr(DockerRunner, "execute", docker_fails)
    monkeypatch.setattr(LocalRunner, "execute", local_runs)
    said: list[str] = []
    outcome = AutoRunner(RunnerOptions(), say=said.append).execute(tmp_path / "bundle", run_dir, None)
    assert outcome.backend == "local"
    assert said == ["backend: local (auto: falling back, docker build of tunix-rt/kernel:abc at unix:///x failed: "
                    "no base image)"]
    with pytest.raises(DockerSetupError):  # no fallback when docker was asked for
        process_runner("docker").execute(tmp_path / "bundle", run_dir, None)


def test_the_default_limits_are_a_kaggle_sessions_ram_without_swap() -> None:
    """30g (docs/kaggle-behaviour.md: a Kaggle session's RAM), no swap, for the flag default and the container."""
    from tunix_rt.cli import build_parser
    from tunix_rt.runners import DEFAULT_MEMORY, DEFAULT_PIDS_LIMIT
    from tunix_rt.runners.docker import hardening

    args = build_parser().parse_args(["rehearse"])
    assert (args.memory, args.pids_limit) == (DEFAULT_MEMORY, DEFAULT_PIDS_LIMIT) == ("30g", 8192)
    opts = hardening()
    assert opts["mem_limit"] == opts["memswap_limit"] == "30g" and opts["pids_limit"] == 8192
