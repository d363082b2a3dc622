"""``tunix-rt run --sessions N`` (chain.py) against the Kaggle emulator with the real kaggle client.

The fast tests push a hand-made bundle whose notebook plays a training session in about a second: it resumes
the step found in an attached previous session's ``output/checkpoint/`` (kernel_sources, mounted by the emulator
under $TUNIX_RT_INPUT_DIR/<slug>/), trains a fixed number of steps and ends ``cut_for_time`` until the schedule
is finished. The ``kernel`` test runs the real bundle: the tiny config cut by a real session timeout."""

from __future__ import annotations

import json
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from kaggle_e2e_helpers import POLL, USER, cli_env, make_bundle, training_outputs, tunix_rt, tunix_rt_popen
from tunix_rt.bundle import BundleInputs
from tunix_rt.chain import ChainPlan, check_chain_dir, check_plan, session_record
from tunix_rt.emulator.app import Emulator
from tunix_rt.errors import TunixRtError
from tunix_rt.runstate import RunState
from tunix_rt.validate import validate_run_dir

BASE = f"{USER}/tiny-chain"

# One training session of the fake kernel: resume the attached checkpoint's step, train PER steps of MAX.
FAKE_SESSION = """
import json, os, pathlib, time
time.sleep(SLEEP)
files = json.loads(FILES)
inputs = pathlib.Path(os.environ.get("TUNIX_RT_INPUT_DIR", "/kaggle/input"))
found = sorted(inputs.glob("*/output/checkpoint/step"))
start = int(found[0].read_text()) if found else 0
end = min(start + PER, MAX)
cut = end < MAX
out = pathlib.Path("output")
(out / "checkpoint").mkdir(parents=True, exist_ok=True)
(out / "checkpoint" / "step").write_text(str(end))
result = json.loads(files["output/run_result.json"])
kernel_run = json.loads(files["output/kernel_run.json"])
result["mode"] = kernel_run["mode"] = "full"
result["status"] = kernel_run["status"] = "cut_for_time" if cut else "complete"
result["training"].update(steps=end - start, max_steps=MAX, first_loss=round(5.0 / (1 + start / 10), 6),
                          final_loss=round(5.0 / (1 + end / 10), 6))
result["session"] = {"start_step": start, "end_step": end, "stop_reason": "deadline" if cut else "max_steps",
                     "deadline_unix": None, "restore_s": None,
                     "resumed_from": {"path": found[0].parent.parent.relative_to(inputs).as_posix(), "step": start}
                     if found else None}
if cut:
    result["eval"] = None
for name, text in files.items():
    if name.endswith("run_result.json"):
        text = json.dumps(result)
    elif name.endswith("kernel_run.json"):
        text = json.dumps(kernel_run)
    elif cut:
        continue  # a session cut for time writes no predictions and no scores
    path = pathlib.Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
print(f"fake session: steps {start + 1}-{end} of {MAX}", "(cut for time)" if cut else "(schedule finished)")
"""


def chain_bundle(folder: Path, tmp: Path, *, max_steps: int = 30, per_session: int = 12,
                 sleep_s: float = 0.0) -> Path:
    code = (FAKE_SESSION.replace("SLEEP", repr(sleep_s)).replace("PER", str(per_session))
            .replace("MAX", str(max_steps)).replace("FILES", repr(json.dumps(training_outputs("s1", tmp)))))
    return make_bundle(folder, code=code)


def chain_args(run_dir: Path, bundle: Path, sessions: int, out: Path, *extra: str) -> list[str]:
    return ["run", "--kernel-id", BASE, "--accelerator", "cpu", "--bundle", str(bundle), "--run-dir", str(run_dir),
            "--sessions", str(sessions), "--session-timeout", "600", "--output", str(out), *POLL, *extra]


def pushed_slugs(emu: Emulator) -> list[str]:
    return [r.body["slug"] for r in emu.calls("SaveKernel")]


def chain_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "chain.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ units


def test_session_kernels_and_sources() -> None:
    plan = ChainPlan(BASE, 3, 3600, resume_from="alice/by-hand")
    assert [plan.session_kernel_id(k) for k in (1, 2, 3)] == [f"{BASE}-s1", f"{BASE}-s2", f"{BASE}-s3"]
    assert [plan.source_of(k) for k in (1, 2, 3)] == ["alice/by-hand", f"{BASE}-s1", f"{BASE}-s2"]
    assert ChainPlan(BASE, 2, 60).source_of(1) is None


@pytest.mark.parametrize(("plan", "inputs", "message"), [
    (ChainPlan(BASE, 0, 60), BundleInputs(mode="full"), "--sessions 0: expected 1 to 99"),
    (ChainPlan(BASE, 2, 60), BundleInputs(mode="smoke"), "--sessions needs --mode full"),
    (ChainPlan(f"{USER}/" + "x" * 48, 2, 60), BundleInputs(mode="full"), "session suffix"),
    (ChainPlan(BASE, 2, 60, resume_from="no slash"), BundleInputs(mode="full"), "--resume-from"),
])
def test_a_chain_that_cannot_work_is_refused_in_one_line(plan: ChainPlan, inputs: BundleInputs,
                                                         message: str) -> None:
    with pytest.raises(TunixRtError) as err:
        check_plan(plan, inputs)
    assert message in err.value.message and err.value.exit_code == 2


def test_a_folder_holding_a_single_run_is_not_a_chain(tmp_path: Path) -> None:
    RunState.new(tmp_path).write()
    with pytest.raises(TunixRtError, match="holds a single run"):
        check_chain_dir(tmp_path)


def test_a_session_not_run_yet_records_nothing_invented(tmp_path: Path) -> None:
    record = session_record(2, RunState.new(tmp_path / "s2"), [f"{BASE}-s1"])
    assert record["run_dir"] == "s2" and record["kernel_sources"] == [f"{BASE}-s1"]
    assert {k for k, v in record.items() if v is not None} == {"session", "run_dir", "kernel_sources"}


# ------------------------------------------------------------------------------------ against the emulator


def test_three_sessions_resume_each_other_and_package_the_last(emu: Emulator, tmp_path: Path,
                                                               run_dir: Path) -> None:
    out = tmp_path / "submission"
    env = cli_env(emu)
    res = tunix_rt(env, *chain_args(run_dir, chain_bundle(tmp_path / "b", tmp_path), 3, out), "--json",
                   timeout=300)
    assert res.code == 0, res.output[-3000:]
    saves = emu.calls("SaveKernel")
    assert pushed_slugs(emu) == [f"{BASE}-s1", f"{BASE}-s2", f"{BASE}-s3"]  # each session pushed once
    assert [s.body.get("kernelDataSources") or [] for s in saves] == [[], [f"{BASE}-s1"], [f"{BASE}-s2"]]
    assert {s.body["sessionTimeoutSeconds"] for s in saves} == {600}
    chain = chain_json(run_dir)
    assert chain["finished"] is True and chain["final_session"] == 3 and chain["end_step"] == chain["max_steps"] == 30
    assert [(s["start_step"], s["end_step"], s["status"]) for s in chain["sessions"]] == [
        (0, 12, "cut_for_time"), (12, 24, "cut_for_time"), (24, 30, "complete")]
    assert [s["resumed_from_step"] for s in chain["sessions"]] == [None, 12, 24]
    assert [s["version_number"] for s in chain["sessions"]] == [1, 1, 1]
    assert chain["steps_trained"] == 30 and chain["final_loss"] == chain["sessions"][-1]["final_loss"]
    assert all(s["wall_s"] is not None and s["kaggle_status"] == "COMPLETE" for s in chain["sessions"])
    for k in (1, 2, 3):  # every session's evidence validates; only the last one has scores
        assert validate_run_dir(run_dir / f"s{k}") == []
    manifests = [json.loads((run_dir / f"s{k}" / "run_manifest.json").read_text()) for k in (1, 2, 3)]
    assert [m["status"] for m in manifests] == ["cut_for_time", "cut_for_time", "complete"]
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1 and chain["zip"] == zips[0].name
    with zipfile.ZipFile(zips[0]) as zf:
        assert any(name.endswith("eval_summary.json") for name in zf.namelist())
    assert str(run_dir) not in (run_dir / "chain.json").read_text()  # portable: no folder of this machine
    assert res.json_lines()[-1]["exit_code"] == 0
    # Rerunning the finished chain pushes nothing and ends the same way.
    again = tunix_rt(env, *chain_args(run_dir, chain_bundle(tmp_path / "b", tmp_path), 3, out), timeout=120)
    assert again.code == 0, again.output[-3000:]
    assert len(emu.calls("SaveKernel")) == 3


@pytest.mark.slow  # two more chains of the fake kernel (~40 s each): the unit tier keeps one
def test_out_of_sessions_is_exit_3_and_more_sessions_continue(emu: Emulator, tmp_path: Path,
                                                              run_dir: Path) -> None:
    out, bundle, env = tmp_path / "submission", chain_bundle(tmp_path / "b", tmp_path), cli_env(emu)
    res = tunix_rt(env, *chain_args(run_dir, bundle, 2, out), timeout=300)
    assert res.code == 3, res.output[-3000:]
    assert "not finished after 2 session(s) (step 24 of 30)" in res.stderr and "--sessions 3" in res.stderr
    assert chain_json(run_dir)["finished"] is False and not out.exists()
    more = tunix_rt(env, *chain_args(run_dir, bundle, 5, out), timeout=300)
    assert more.code == 0, more.output[-3000:]
    assert pushed_slugs(emu) == [f"{BASE}-s1", f"{BASE}-s2", f"{BASE}-s3"]  # stops once the schedule is done
    assert chain_json(run_dir)["final_session"] == 3 and len(list(out.glob("*.zip"))) == 1


@pytest.mark.slow  # two more chains of the fake kernel (~40 s each): the unit tier keeps one
def test_a_chain_killed_mid_session_resumes_without_pushing_twice(emu: Emulator, tmp_path: Path,
                                                                  run_dir: Path) -> None:
    out, env = tmp_path / "submission", cli_env(emu)
    bundle = chain_bundle(tmp_path / "b", tmp_path, sleep_s=3.0)
    proc = tunix_rt_popen(env, *chain_args(run_dir, bundle, 3, out))
    deadline = time.monotonic() + 120
    s2 = run_dir / "s2" / "run_state.json"
    while time.monotonic() < deadline:
        if s2.is_file() and (json.loads(s2.read_text()).get("kaggle") or {}).get("version_number"):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert pushed_slugs(emu) == [f"{BASE}-s1", f"{BASE}-s2"]
    res = tunix_rt(env, *chain_args(run_dir, bundle, 3, out), timeout=300)
    assert res.code == 0, res.output[-3000:]
    assert "not pushing again" in res.stderr
    assert pushed_slugs(emu) == [f"{BASE}-s1", f"{BASE}-s2", f"{BASE}-s3"]


def test_resume_from_attaches_a_kernel_to_one_run(emu: Emulator, tmp_path: Path, run_dir: Path) -> None:
    emu.seed_version(USER, "by-hand-s1", outputs={"output/checkpoint/step": b"24"})
    res = tunix_rt(cli_env(emu), "run", "--kernel-id", f"{USER}/by-hand-s2", "--accelerator", "cpu", "--bundle",
                   str(chain_bundle(tmp_path / "b", tmp_path)), "--run-dir", str(run_dir), "--resume-from",
                   f"{USER}/by-hand-s1", "--output", str(tmp_path / "z"), *POLL, timeout=120)
    assert res.code == 0, res.output[-3000:]
    assert emu.calls("SaveKernel")[-1].body["kernelDataSources"] == [f"{USER}/by-hand-s1"]
    result = json.loads((run_dir / "outputs" / "output" / "run_result.json").read_text())
    assert result["session"]["start_step"] == 24 and result["status"] == "complete"


# ---------------------------------------------------------------------------------------- the real bundle

# The trainer stops this long (plus one step) before its deadline. It must cover what comes after the cut (a
# checkpoint, the outputs, the notebook's last cells) and the notebook's late clock: the emulator, like Kaggle,
# counts the session from the kernel's start, the notebook from its first cell (10-20 s later on a loaded machine).
MARGIN_S = 60.0
SESSION_TIMEOUTS_S = (150, 300, 600)  # the first one a calibration session trains enough steps in (see below)


def tiny_config(path: Path, repo_root: Path, max_steps: int) -> Path:
    import yaml

    raw = yaml.safe_load((repo_root / "training/configs/sft_tiny.yaml").read_text(encoding="utf-8"))
    raw["training"]["max_steps"] = max_steps
    raw["checkpoint"]["deadline_margin_s"] = MARGIN_S
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def real_chain(env: dict[str, str], kernel_id: str, config: Path, run_dir: Path, sessions: int, timeout_s: int,
               out: Path) -> Any:
    return tunix_rt(env, "run", "--kernel-id", kernel_id, "--accelerator", "cpu", "--config", str(config),
                    "--mode", "full", "--dataset", "dev-reasoning-v2", "--run-dir", str(run_dir), "--sessions",
                    str(sessions), "--session-timeout", str(timeout_s), "--output", str(out),
                    "--poll-min", "1", "--poll-max", "3", timeout=timeout_s * (sessions + 2) + 120)


@pytest.mark.kernel
@pytest.mark.slow
def test_real_sessions_cut_by_the_session_timeout_resume_each_other(emu: Emulator, repo_root: Path, tmp_path: Path,
                                                                   run_dir: Path) -> None:
    """The Done-when of issue 12: the real tiny bundle, each session cut by its real session timeout (the
    trainer's deadline, baked into the notebook), 3 kernels each pushed once, steps continuing across sessions,
    chain.json and a valid final evidence set.

    How many steps fit in a session depends on the machine (start-up alone is 40 s on an idle 2-core machine
    and several times that on a loaded one), so a calibration session (a schedule far too long) measures it
    first, at the shortest session timeout that trains at least 8 steps, and the chain's schedule is 2.5
    sessions of it: two sessions cut, the third finishes with room for its evaluation. The chain may use up to
    4 sessions, and one that ran faster than the calibration finishes in 2: what a session trains is a matter
    of the machine's speed between calibration and chain (seen here: +17 % to +27 % with a warm compilation
    cache, −55 % under load 10), and the exact count of 3 is test_three_sessions_resume_each_other…'s job.
    Whatever the count, every session but the last is cut by the session timeout and the next resumes it."""
    env, out = cli_env(emu), tmp_path / "submission"
    long_schedule = tiny_config(tmp_path / "c" / "chain_tiny.yaml", repo_root, 100_000)
    for timeout_s in SESSION_TIMEOUTS_S:
        calib_dir = run_dir.parent / f"calibration-{timeout_s}"
        calib = real_chain(env, f"{USER}/tiny-calibration-{timeout_s}", long_schedule, calib_dir, 1, timeout_s, out)
        assert calib.code == 3, calib.output[-4000:]  # cut for time, the schedule unfinished: out of sessions
        per_session = chain_json(calib_dir)["sessions"][0]["end_step"]
        if per_session >= 8:
            break
    assert per_session >= 8, f"only {per_session} steps fit in a {timeout_s} s session on this machine"
    max_steps = round(2.5 * per_session)

    res = real_chain(env, BASE, tiny_config(tmp_path / "r" / "chain_tiny.yaml", repo_root, max_steps), run_dir, 4,
                     timeout_s, out)
    detail = (f"(calibration: {per_session} steps per {timeout_s} s session; schedule {max_steps})\n"
              f"{res.output[-4000:]}")
    assert res.code == 0, detail
    chain = chain_json(run_dir)
    sessions = chain["sessions"]
    n = len(sessions)
    assert 2 <= n <= 4 and chain["final_session"] == n, detail
    saves = [r for r in emu.calls("SaveKernel") if r.body["slug"].startswith(BASE)]
    assert [s.body["slug"] for s in saves] == [f"{BASE}-s{k}" for k in range(1, n + 1)], detail  # each pushed once
    assert [s.body.get("kernelDataSources") or [] for s in saves] == [[]] + [[f"{BASE}-s{k}"] for k in range(1, n)]
    assert {s.body["sessionTimeoutSeconds"] for s in saves} == {timeout_s}
    assert [s["stop_reason"] for s in sessions] == ["deadline"] * (n - 1) + ["max_steps"], detail
    assert [s["status"] for s in sessions] == ["cut_for_time"] * (n - 1) + ["complete"]
    assert sessions[0]["start_step"] == 0 and sessions[-1]["end_step"] == max_steps == chain["max_steps"]
    for before, after in zip(sessions, sessions[1:], strict=False):  # each resumes where the previous stopped
        assert after["start_step"] == after["resumed_from_step"] == before["end_step"]
    assert chain["finished"] and chain["steps_trained"] == max_steps
    for k in range(1, n + 1):
        assert validate_run_dir(run_dir / f"s{k}") == []
        version = emu.version(USER, f"tiny-chain-s{k}", 1)
        assert version is not None and version.status == "COMPLETE"  # ended by itself before the emulator's kill
        assert version.finished_at - version.started_at < timeout_s
    summary = json.loads((run_dir / f"s{n}" / "eval_summary.json").read_text())
    assert summary["status"] == "complete" and summary["n_predictions"] == summary["n_items"] > 0
    assert len(list(out.glob("*.zip"))) == 1
    print(f"\nchain: {per_session} steps per {timeout_s} s session (calibration), schedule {max_steps}: "
          + ", ".join(f"s{s['session']} {s['start_step']}->{s['end_step']} ({s['stop_reason']}, "
                      f"{s['kernel_wall_s']} s)" for s in sessions))
