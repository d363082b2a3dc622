"""The stage engine: order, skips, resume, stops, failure records; and `tunix-rt run` end to end touches the
run state once per stage (read once, written after each stage; in-stage checkpoints are the state object's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaggle_e2e_helpers import POLL, cli_env, make_bundle, push_args, training_outputs
from tunix_rt.emulator import Emulator
from tunix_rt.engine import BaseStage, Context, StageResult, run_flow
from tunix_rt.errors import EXIT_KERNEL_FAILED, TunixRtError
from tunix_rt.progress import Reporter
from tunix_rt.runstate import RunState


class Step(BaseStage):
    def __init__(self, name: str, log: list[str], *, raise_: str | None = None, stop: int | None = None,
                 skip_reason: str | None = None, record: bool = True) -> None:
        self.name, self.log, self.raise_, self.stop, self.skip_reason = name, log, raise_, stop, skip_reason
        self.record = record

    def skip(self, ctx: Context) -> str | None:
        return self.skip_reason

    def run(self, ctx: Context) -> StageResult:
        self.log.append(self.name)
        if self.raise_:
            raise TunixRtError(self.raise_, 5)
        return StageResult({"n": len(self.log)}, value=self.name.upper(), stop=self.stop,
                           error="stopped" if self.stop else None)


def ctx_for(run_dir: Path, *, resume: bool = False) -> Context:
    return Context(RunState.read(run_dir), Reporter("test", json_mode=True), resume=resume)


def events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_stages_run_in_order_and_each_is_recorded(tmp_path: Path) -> None:
    log: list[str] = []
    ctx = ctx_for(tmp_path / "r")
    flow = run_flow([Step("a", log), Step("check", log, record=False), Step("b", log)], ctx)
    assert (flow.exit_code, flow.ran, log) == (0, ["a", "check", "b"], ["a", "check", "b"])
    assert flow.values == {"a": "A", "check": "CHECK", "b": "B"}
    state = RunState.read(tmp_path / "r")
    assert list(state.stages) == ["a", "b"] and state.stage("b").details == {"n": 3}


def test_a_resumed_flow_skips_done_stages_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_flow([Step("a", []), Step("b", [])], ctx_for(tmp_path / "r"))
    capsys.readouterr()
    log: list[str] = []
    flow = run_flow([Step("a", log), Step("b", log), Step("c", log)], ctx_for(tmp_path / "r", resume=True))
    assert log == ["c"] and flow.skipped == ["a", "b"]
    assert [(e["event"], e["message"]) for e in events(capsys)] == [
        ("stage_skipped", "a: already done; skipping"), ("stage_skipped", "b: already done; skipping")]
    # not resuming (a single verb), done stages run again
    log.clear()
    run_flow([Step("a", log)], ctx_for(tmp_path / "r"))
    assert log == ["a"]


def test_a_stage_may_skip_itself_whatever_the_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log: list[str] = []
    flow = run_flow([Step("push", log, skip_reason="already pushed x v1; not pushing again"), Step("b", log)],
                    ctx_for(tmp_path / "r"))
    assert log == ["b"] and flow.skipped == ["push"]
    assert events(capsys)[0]["message"] == "push: already pushed x v1; not pushing again"


def test_a_stop_ends_the_flow_after_recording_the_stage(tmp_path: Path) -> None:
    log: list[str] = []
    flow = run_flow([Step("evidence", log, stop=EXIT_KERNEL_FAILED), Step("validate", log)], ctx_for(tmp_path / "r"))
    assert (flow.exit_code, flow.error, log) == (EXIT_KERNEL_FAILED, "stopped", ["evidence"])
    assert RunState.read(tmp_path / "r").done("evidence")


def test_a_failing_stage_is_recorded_only_in_a_run_that_has_a_state(tmp_path: Path) -> None:
    with pytest.raises(TunixRtError):
        run_flow([Step("bundle", [], raise_="bad config")], ctx_for(tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()  # a refused first stage leaves nothing behind
    run_flow([Step("bundle", [])], ctx_for(tmp_path / "r"))
    with pytest.raises(TunixRtError):
        run_flow([Step("push", [], raise_="Kaggle refused the push")], ctx_for(tmp_path / "r"))
    record = RunState.read(tmp_path / "r").stage("push")
    assert record is not None and (record.status, record.details) == ("failed", {"error": "Kaggle refused the push"})


def test_run_touches_the_run_state_once_per_stage(emu: Emulator, tmp_path: Path, run_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`tunix-rt run` in process: the state is read once, written once after each stage; the writes inside a
    stage are its crash-resume checkpoints (push: the attempt before SaveKernel; wait: each status change;
    pull: each file), all through the one state object. kernel-metadata.json is written once, the evidence
    validated once."""
    from tunix_rt import bundle as bundle_mod
    from tunix_rt import package as package_mod
    from tunix_rt import validate as validate_mod
    from tunix_rt.cli import main

    for key, value in cli_env(emu).items():
        monkeypatch.setenv(key, value)
    files = training_outputs(run_dir.name, tmp_path)
    bundle = make_bundle(tmp_path / "b", files=files)
    reads: list[Path] = []
    writes: list[tuple[str, ...]] = []
    metadata_writes: list[Path] = []
    real_read, real_write, real_atomic = RunState.read.__func__, RunState.write, bundle_mod.write_atomic

    def counted_read(cls: type[RunState], path: Path) -> RunState:
        reads.append(Path(path))
        return real_read(cls, path)

    def counted_write(self: RunState) -> Path:
        writes.append(tuple(name for name, rec in self.stages.items() if rec.done))
        return real_write(self)

    def counted_atomic(path: Path, data: bytes | str) -> Path:
        if Path(path).name == "kernel-metadata.json":
            metadata_writes.append(Path(path))
        return real_atomic(path, data)

    monkeypatch.setattr(RunState, "read", classmethod(counted_read))
    monkeypatch.setattr(RunState, "write", counted_write)
    monkeypatch.setattr(bundle_mod, "write_atomic", counted_atomic)
    validations: list[Path] = []
    real_validate = validate_mod.validate_run_dir

    def counted_validate(run: Path, **kwargs: Any) -> list:
        validations.append(Path(run))
        return real_validate(run, **kwargs)

    monkeypatch.setattr(validate_mod, "validate_run_dir", counted_validate)
    monkeypatch.setattr(package_mod, "validate_run_dir", counted_validate)
    code = main(["run", *push_args(run_dir, bundle, "cpu"), "--output", str(tmp_path / "zip"), *POLL])
    assert code == 0, capsys.readouterr()
    assert reads == [run_dir]
    assert len(metadata_writes) == 1 and validations == [run_dir]
    stages = ["bundle", "push", "wait", "pull", "evidence", "validate", "package"]
    # one write at the end of each stage: the set of done stages grows by that stage
    ends = [w for i, w in enumerate(writes) if i + 1 == len(writes) or writes[i + 1] != w]
    assert [w[-1] for w in ends] == stages
    checkpoints = len(writes) - len(stages)
    # push: the attempt; wait: status changes (at most QUEUED, RUNNING); pull: one per downloaded file
    assert 1 + len(files) <= checkpoints <= 1 + 2 + len(files), writes
    state = real_read(RunState, run_dir)
    assert {name for name, rec in state.stages.items() if rec.done} == set(stages)
