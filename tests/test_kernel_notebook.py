"""The kernel notebook's contract: its cells, the commands it runs (each parsed by the real script's argparse,
so flag drift fails here and not on Kaggle), its pinned requirements, and failure propagation (a failing
step fails the notebook and the success banner never prints)."""

from __future__ import annotations

import argparse
import ast
import importlib
import io
import json
import platform
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import nbformat
import pytest
from packaging.requirements import Requirement
from tunix_rt import paths
from tunix_rt.bundle import (
    PAYLOAD_TAG,
    build_bundle,
    build_payload,
    extract_payload,
    payload_files,
    render_notebook,
)
from tunix_rt.runners.local import CONSOLE_LOG, run_local

TEMPLATE = paths.kernel_dir() / "kaggle_submission.ipynb"
BANNER = "✅ Smoke run completed successfully!"
HEADERS = ["1 Setup", "2 Configuration", "3 Build Dataset", "4a Smoke Run", "4b Full Training Run",
           "5 Generate Predictions", "6 Evaluate & Score", "7 Submission Summary"]
# The entry scripts the notebook runs → the library function (argv → exit code) that parses their flags.
SCRIPTS = {
    "train_jax.py": ("tunix_rt.training.run", "main"),
    "rescore.py": ("tunix_rt.training.commands", "rescore"),
    "build_dataset.py": ("tunix_rt.training.commands", "build_dataset"),
}


UNCHECKED_CALLS = {"os.system", "os.popen", "subprocess.run", "subprocess.call", "subprocess.check_output"}


def _code(nb: Any) -> dict[str, str]:
    return {c["id"]: "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"}


def test_template_has_the_runbook_cells_in_order() -> None:
    nb = nbformat.read(TEMPLATE, as_version=4)
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert nb.metadata.kernelspec.name == "python3"
    headers = [c.source.splitlines()[0].removeprefix("## ") for c in nb.cells
               if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert headers == HEADERS
    # every section is a markdown header followed by code
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            assert nb.cells[i + 1].cell_type == "code"
    tagged = {tag: [c.id for c in nb.cells if tag in c.metadata.get("tags", [])]
              for tag in ("parameters", PAYLOAD_TAG)}
    assert tagged == {"parameters": ["parameters"], PAYLOAD_TAG: ["payload"]}
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def test_notebook_never_shells_out_unchecked() -> None:
    """Every subprocess goes through run(), which raises on a non-zero exit; no magics, no os.system."""
    code = _code(json.loads(TEMPLATE.read_text(encoding="utf-8")))
    run_args: list[str] = []
    popen = 0
    for cell_id, source in code.items():
        assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines()), cell_id
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                assert func not in UNCHECKED_CALLS, (cell_id, func)
                popen += func == "subprocess.Popen"
                if func == "run":
                    assert len(node.args) == 1 and isinstance(node.args[0], ast.Name), ast.unparse(node)
                    run_args.append(node.args[0].id)
    assert popen == 1  # inside run(), which checks the exit code
    assert "raise subprocess.CalledProcessError" in code["setup"]
    assert sorted(run_args) == ["FULL_CMD", "JAX_PROBE_CMD", "PIP_INSTALL_CMD", "SCORE_CMD", "SMOKE_CMD", "cmd"]
    assert "for cmd in DATASET_CHECK_CMDS:" in code["dataset"]


def test_banner_only_after_everything_passed() -> None:
    code = _code(json.loads(TEMPLATE.read_text(encoding="utf-8")))
    holders = [cid for cid, src in code.items() if BANNER in src]
    assert holders == ["summary"] and list(code)[-1] == "summary"
    summary = code["summary"]
    assert summary.index('write_kernel_run("complete")') < summary.index(BANNER)


def _commands(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch, session_timeout_s: int | None = None,
              input_dir: Path = Path("/kaggle/input")) -> tuple[Path, dict[str, Any]]:
    """Run the bundle's Configuration cells on its real, unpacked payload; returns the payload root and every
    *_CMD(S), KERNEL_RUN and RESUME_FROM."""
    info = build_bundle(tmp_path / "m33_rehearsal", mode=mode, session_timeout_s=session_timeout_s)
    payload_dir = tmp_path / "payload"
    with tarfile.open(fileobj=io.BytesIO(extract_payload(info.notebook_path)), mode="r:gz") as tar:
        tar.extractall(payload_dir, filter="data")
    code = _code(json.loads(info.notebook_path.read_text(encoding="utf-8")))
    # The Setup cell puts the payload root first on sys.path and imports training/'s light modules from it.
    monkeypatch.syspath_prepend(str(payload_dir))
    for name in [m for m in sys.modules if m == "training" or m.startswith("training.")]:
        monkeypatch.delitem(sys.modules, name)
    ns: dict[str, Any] = {
        "json": json, "os": __import__("os"), "platform": platform, "sys": sys, "Path": Path,
        "PAYLOAD_DIR": payload_dir, "OUTPUT_DIR": tmp_path / "work" / "output", "INPUT_DIR": input_dir,
        "RUN_TYPE": "Batch", "CELLS_COMPLETED": [], "cell_done": lambda name: None, "SESSION_START_UNIX": 1_000_000.0,
        "JAX_DEVICES": {"backend": "cpu", "count": 1, "kinds": ["cpu"], "jax": "0"},
        "contract": importlib.import_module("training.contract"),
        "report": importlib.import_module("training.report"),
    }
    exec(code["parameters"], ns)  # noqa: S102 - the notebook's own cells
    exec(code["config-check"], ns)  # noqa: S102
    return payload_dir, {k: v for k, v in ns.items()
                         if k.endswith(("_CMD", "_CMDS")) or k in ("KERNEL_RUN", "RESUME_FROM")}


class _Parsed(Exception):
    pass


def _parse(cmd: list[Any], root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           input_dir: Path = Path("/kaggle/input")) -> Any:
    """Parse ``cmd``'s arguments with the real script's own parser (stopping before it runs anything). The
    command must be the runbook's portable form: ``python`` and paths relative to the payload ``root`` (or
    under the input folder, Kaggle's /kaggle/input)."""
    assert cmd[0] == "python"
    script = Path(cmd[1])
    assert not script.is_absolute() and (root / script).is_file(), f"{script} is not in the payload"
    module_name, function = SCRIPTS[script.name]
    main = getattr(importlib.import_module(module_name), function)
    argv = [str(a) for a in cmd[2:]]
    assert not any(Path(a).is_absolute() and not Path(a).is_relative_to(input_dir) for a in argv), cmd
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parsed(original(self, args, namespace))

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        try:
            main(argv)
        except _Parsed as parsed:
            return parsed.args[0]
        except SystemExit as exc:
            pytest.fail(f"{script.name} rejects {argv} (exit {exc.code}): {capsys.readouterr().err.strip()}")
    pytest.fail(f"{script.name} did not parse its arguments")


@pytest.mark.kernel  # importing train_jax's modules needs numpy (the training stack)
@pytest.mark.parametrize("mode", ["smoke", "full"])
def test_every_command_parses_against_its_script(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root, cmds = _commands(tmp_path, mode, monkeypatch)
    assert cmds.pop("RESUME_FROM") is None and cmds.pop("KERNEL_RUN")["session_timeout_s"] is None
    assert set(cmds) == {"DATASET_CHECK_CMDS", "TRAIN_CMD", "SMOKE_CMD", "FULL_CMD", "SCORE_CMD"}

    smoke = _parse(cmds["SMOKE_CMD"], root, monkeypatch, capsys)
    # smoke_steps: the config's training.smoke_steps (2 in sft_tiny.yaml)
    assert (smoke.smoke_steps, smoke.device, smoke.dataset) == (2, "auto", "dev-reasoning-v2-x10")
    assert smoke.output == "output"  # the payload root's link to the working dir's output/
    assert (root / smoke.config).is_file() and (root / smoke.eval_set).is_file()
    assert smoke.input_dir == "/kaggle/input"  # train_jax's default ($TUNIX_RT_INPUT_DIR in rehearsals)
    full = _parse(cmds["FULL_CMD"], root, monkeypatch, capsys)
    assert full.smoke_steps is None and full.max_steps is None  # the config's schedule
    assert full.resume_from is None and full.deadline_unix is None  # nothing attached, no session timeout

    score = _parse(cmds["SCORE_CMD"], root, monkeypatch, capsys)
    assert str(score.predictions) == "output/predictions.jsonl" and (root / score.eval_set).is_file()
    assert str(score.output) == "output/rescored_eval_results.json"

    assert cmds["DATASET_CHECK_CMDS"], "the payload ships no dataset to check"
    for cmd in cmds["DATASET_CHECK_CMDS"]:
        checked = _parse(cmd, root, monkeypatch, capsys)
        assert checked.check is True and checked.out is None  # the shipped files, next to the script


@pytest.mark.kernel
@pytest.mark.parametrize("layout", ["tunix-rt-s1/output", "notebooks/alice/tunix-rt-s1/output"])
def test_full_run_resumes_an_attached_session_until_the_deadline(
        tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A previous session's output attached as a kernel source (classic or newer /kaggle/input layout) is
    passed as --resume_from; the baked session timeout becomes --deadline_unix from the notebook's start."""
    inputs = tmp_path / "input"
    (inputs / layout / "checkpoint" / "12").mkdir(parents=True)
    (inputs / "gemma-3" / "transformers").mkdir(parents=True)  # a model source: not a session
    root, cmds = _commands(tmp_path, "full", monkeypatch, session_timeout_s=3600, input_dir=inputs)
    full = _parse(cmds["FULL_CMD"], root, monkeypatch, capsys, input_dir=inputs)
    assert Path(full.resume_from) == inputs / layout
    assert full.deadline_unix == 1_000_000.0 + 3600
    assert cmds["KERNEL_RUN"]["resumed_from"] == layout and cmds["KERNEL_RUN"]["session_timeout_s"] == 3600
    smoke = _parse(cmds["SMOKE_CMD"], root, monkeypatch, capsys)  # smoke runs never resume nor stop for time
    assert smoke.resume_from is None and smoke.deadline_unix is None


def test_two_attached_sessions_are_ambiguous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "input"
    for slug in ("s1", "s2"):
        (inputs / slug / "output" / "checkpoint").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="several previous sessions attached"):
        _commands(tmp_path, "full", monkeypatch, input_dir=inputs)


def _pinned(name: str) -> set[str]:
    lines = (paths.kernel_dir() / name).read_text(encoding="utf-8").splitlines()
    return {str(Requirement(line)) for line in lines if line.strip() and not line.startswith("#")}


def test_requirements_match_the_kernel_extra() -> None:
    pyproject = tomllib.loads((paths.project_root() / "pyproject.toml").read_text(encoding="utf-8"))
    extra = {str(Requirement(r)) for r in pyproject["project"]["optional-dependencies"]["kernel"]}
    assert _pinned("requirements.txt") == extra


def test_gpu_requirements_match_the_kernel_gpu_extra() -> None:
    """kernel-gpu = the kernel extra with JAX as jax[cuda12] at the same versions, and nothing else changed."""
    extras = tomllib.loads((paths.project_root() / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["optional-dependencies"]
    gpu = [Requirement(r) for r in extras["kernel-gpu"]]
    assert [r for r in gpu if r.name == "tunix-rt"] == [Requirement("tunix-rt[kernel]")]
    cuda_jax = {str(r) for r in gpu if r.name == "jax"}
    kernel = [Requirement(r) for r in extras["kernel"]]
    assert {str(r) for r in kernel if r.name != "jax"} | cuda_jax == _pinned("requirements-gpu.txt")
    cpu_jax = {(str(r.specifier), str(r.marker)) for r in kernel if r.name == "jax"}
    assert {(str(Requirement(r).specifier), str(Requirement(r).marker)) for r in cuda_jax} == cpu_jax
    assert all(Requirement(r).extras == {"cuda12"} for r in cuda_jax)


def test_the_template_itself_fails_loudly(tmp_path: Path) -> None:
    """Run with papermill as a rehearsal would: no payload → Setup raises → non-zero exit, no banner."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "kaggle_submission.ipynb").write_bytes(TEMPLATE.read_bytes())
    outcome = run_local(bundle, tmp_path / "run", stream=None)
    log = (tmp_path / "run" / "raw_log" / CONSOLE_LOG).read_text(encoding="utf-8")
    assert outcome.exit_code != 0 and not outcome.ok
    assert "no embedded payload" in log and BANNER not in log
    assert (tmp_path / "run" / "outputs" / "__notebook__.ipynb").is_file()


def _broken_bundle(tmp_path: Path, config_text: str) -> Path:
    """A bundle of the stock payload plus ``configs/broken.yaml`` (``config_text``), in smoke mode."""
    stock = paths.training_dir() / "configs" / "sft_tiny.yaml"
    bad = tmp_path / "broken.yaml"
    bad.write_text(config_text, encoding="utf-8")
    files = payload_files(stock, paths.training_dir() / "evalsets" / "eval_v1.jsonl")
    files["training/configs/broken.yaml"] = bad
    params = {"mode": "smoke", "config": "configs/broken.yaml", "dataset": "dev-reasoning-v2",
              "eval_set": "evalsets/eval_v1.jsonl", "run_version": "broken", "session_timeout_s": None}
    bundle = tmp_path / "broken" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "kaggle_submission.ipynb").write_text(render_notebook(params, build_payload(files)),
                                                    encoding="utf-8")
    return bundle


@pytest.mark.kernel
def test_failing_training_step_fails_the_notebook(tmp_path: Path) -> None:
    """A config the training script rejects (a trace longer than data.seq_len): papermill exits non-zero, the
    banner never prints, and kernel_run.json says failed with the cells that did complete."""
    stock = (paths.training_dir() / "configs" / "sft_tiny.yaml").read_text(encoding="utf-8")
    assert "  seq_len: 128\n" in stock
    bundle = _broken_bundle(tmp_path, stock.replace("  seq_len: 128\n", "  seq_len: 8\n"))

    outcome = run_local(bundle, tmp_path / "broken", stream=None)
    log = outcome.log_path.read_text(encoding="utf-8")
    assert outcome.exit_code != 0
    assert "data.seq_len" in log and "CalledProcessError" in log
    assert BANNER not in log
    kernel_run = json.loads((outcome.outputs_dir / "output" / "kernel_run.json").read_text(encoding="utf-8"))
    assert kernel_run["status"] == "failed"
    assert kernel_run["cells_completed"] == ["1 Setup", "2 Configuration", "3 Build Dataset"]
    assert kernel_run["kaggle_kernel_run_type"] == "Batch"


@pytest.mark.kernel
def test_bad_config_fails_at_configuration_naming_the_payload_path(tmp_path: Path) -> None:
    """An unknown config key stops the notebook in 2 Configuration, before anything trains; the error names
    the config by its payload path, not by the temporary folder the payload was unpacked into."""
    stock = (paths.training_dir() / "configs" / "sft_tiny.yaml").read_text(encoding="utf-8")
    outcome = run_local(_broken_bundle(tmp_path, stock + "\nbogus_key: 1\n"), tmp_path / "broken", stream=None)
    log = outcome.log_path.read_text(encoding="utf-8")
    assert outcome.exit_code != 0 and BANNER not in log
    assert "training/configs/broken.yaml: bogus_key: unknown key" in log
    assert "tunix_rt_payload_" not in log and str(tmp_path) not in log
    assert not (outcome.outputs_dir / "output" / "run_result.json").exists()  # nothing trained
