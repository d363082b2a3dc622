"""``--gpus`` (automation/runners/gpus.py): docker-style values, what the container is given, and that GPUs mean
an image built with CUDA JAX (kernel/requirements-gpu.txt) rather than the CPU one."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from tunix_rt.cli import build_parser
from tunix_rt.commands.rehearse import command_line
from tunix_rt.runners import docker as docker_runner
from tunix_rt.runners.gpus import parse_gpus


@pytest.mark.parametrize(("value", "count", "ids"), [
    ("all", -1, ()),
    ("2", 2, ()),
    ("device=0", None, ("0",)),
    ("device=0,GPU-3f2a", None, ("0", "GPU-3f2a")),
])
def test_docker_style_values(value: str, count: int | None, ids: tuple[str, ...]) -> None:
    request = parse_gpus(value)
    assert (request.spec, request.count, request.device_ids) == (value, count, ids)
    [device_request] = request.device_requests()
    assert device_request["Capabilities"] == [["gpu"]]
    if ids:
        assert device_request["DeviceIDs"] == list(ids)
    else:
        assert device_request["Count"] == count


@pytest.mark.parametrize("value", ["", "0", "-1", "none", "device=", "device=0,", "gpu"])
def test_other_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="--gpus"):
        parse_gpus(value)


def test_rehearse_flag_default_bare_and_value(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["rehearse"]).gpus is None  # no GPUs unless asked
    assert parser.parse_args(["rehearse", "--gpus"]).gpus == "all"
    args = parser.parse_args(["rehearse", "--backend", "docker", "--gpus", "all"])
    assert args.gpus == "all"
    assert shlex.split(command_line(args))[-2:] == ["--gpus", "all"]
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["rehearse", "--gpus", "most"])
    assert exc.value.code == 2
    assert "'most' is not all, a count, or device=ID[,ID]" in capsys.readouterr().err


def test_gpu_image_is_its_own_image_built_with_cuda_jax() -> None:
    """--gpus builds (and finds again) a separate image whose requirements are the CUDA-JAX pins."""
    assert docker_runner.requirements_path("cuda12").name == "requirements-gpu.txt"
    assert docker_runner.requirements_path().name == "requirements.txt"
    assert docker_runner.default_tag(None, accelerator="cuda12") != docker_runner.default_tag(None)
    gpu_pins = docker_runner.requirements_path("cuda12").read_text(encoding="utf-8")
    assert "jax[cuda12]==" in gpu_pins
    dockerfile = docker_runner.dockerfile_path().read_text(encoding="utf-8")
    assert "ARG JAX_ACCELERATOR=cpu" in dockerfile and "requirements-gpu.txt" in dockerfile
    with docker_runner._build_context(None) as context:  # noqa: SLF001 - what the daemon receives
        names = sorted(p.relative_to(context).as_posix() for p in Path(context).rglob("*") if p.is_file())
    assert {"Dockerfile", "kernel/requirements.txt", "kernel/requirements-gpu.txt"} <= set(names)
