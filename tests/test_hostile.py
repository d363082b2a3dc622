"""Hostile and careless use (issue 14), end to end through the CLI where it can be."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kaggle_e2e_helpers import (
    POLL,
    SLUG,
    USER,
    cli_env,
    make_bundle,
    push_args,
    state,
    training_outputs,
    tunix_rt,
    tunix_rt_popen,
    versions,
)
from tunix_rt.emulator import Emulator
from tunix_rt.rundir_lock import LOCK_NAME

# (The imports above are the process side's; the lead merges them with the data side's at the top.)


# ---- process side (items 2, 3, 4, 8, 9, 10) ---------------------------------------------------------------
# One process per run dir, a push whose reply never came, signals, stages complete only on valid results,
# nothing lost, Docker limits. (Item 9, the CI example, is tests/test_ci_example.py.) Each case drives the real
# CLI in a subprocess: against the emulator with the real kaggle client, or a real dockerd.


def _until(check, timeout: float = 120.0, what: str = "condition") -> None:
    """Wait (generously: a shared 2-core machine) until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _saves(emu: Emulator) -> list:
    """SaveKernel requests the emulator processed (a hang is processed too, late)."""
    return [r for r in emu.calls("SaveKernel") if r.fault in (None, "drop_after", "hang")]


def test_two_runs_on_one_run_dir_push_once_and_the_second_names_the_holder(
        emu: Emulator, good_bundle: Path, run_dir: Path, tmp_path: Path) -> None:
    """Before: both pushed (v1 and v2) and mixed their state. Now the second exits 2 at once naming the first."""
    env = cli_env(emu)
    args = ["run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"), *POLL]
    procs = [tunix_rt_popen(env, *args), tunix_rt_popen(env, *args)]  # started together: a real race
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    loser = codes.index(2)
    winner_pid = procs[1 - loser].pid
    assert f"in use by pid {winner_pid} (tunix-rt run" in outs[loser][1]
    assert "since 20" in outs[loser][1]
    assert versions(emu) == [1] and len(_saves(emu)) == 1
    assert state(run_dir)["kaggle"]["version_number"] == 1
    assert not (run_dir / LOCK_NAME).exists()  # released and removed when the winner ended


def test_a_second_verb_is_refused_while_a_run_holds_the_run_dir(emu: Emulator, tmp_path: Path,
                                                               run_dir: Path) -> None:
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path), sleep_s=8)
    env = cli_env(emu)
    first = tunix_rt_popen(env, "run", *push_args(run_dir, bundle), "--output", str(tmp_path / "zip"), *POLL)
    try:
        _until(lambda: (run_dir / "run_state.json").exists(), what="the run to start")
        for verb in (["wait", "--run-dir", str(run_dir)], ["pull", "--run-dir", str(run_dir)],
                     ["push", *push_args(run_dir, bundle)]):
            started = time.monotonic()
            res = tunix_rt(env, *verb, "--json")
            assert res.code == 2, res.output
            assert f"in use by pid {first.pid}" in res.stderr
            assert json.loads(res.stdout.splitlines()[-1])["exit_code"] == 2
            assert time.monotonic() - started < 60  # at once, not after the holder (which sleeps 8 s)
            assert first.poll() is None
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert versions(emu) == [1] and len(_saves(emu)) == 1


def test_save_kernel_completing_after_the_client_timeout_is_adopted_not_pushed_again(
        emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    """The emulator processes SaveKernel 6 s late; the client's read timeout is 2 s. Before: three quick looks
    for v1 found nothing and the push was sent again (v1 and v2). Now v1 is looked for through the settle
    window and adopted."""
    emu.set_faults(hang_seconds=6)
    emu.script_faults("SaveKernel", "hang")
    env = cli_env(emu, TUNIX_RT_API_TIMEOUT_S="2")
    res = tunix_rt(env, "push", *push_args(run_dir, good_bundle), "--push-settle", "60", timeout=180)
    assert res.code == 0, res.output
    assert "push outcome unknown" in res.stderr and "not pushing again" in res.stderr
    assert versions(emu) == [1] and len(emu.calls("SaveKernel")) == 1
    assert state(run_dir)["kaggle"]["version_number"] == 1


def test_a_push_killed_mid_way_and_rerun_at_once_adopts_the_version_it_created(
        emu: Emulator, good_bundle: Path, run_dir: Path) -> None:
    emu.set_faults(hang_seconds=5)
    emu.script_faults("SaveKernel", "hang")
    env = cli_env(emu)
    killed = tunix_rt_popen(env, "push", *push_args(run_dir, good_bundle))
    _until(lambda: len(emu.calls("SaveKernel")) == 1 or killed.poll() is not None, what="SaveKernel sent")
    killed.kill()  # SIGKILL: no clean-up at all; push_attempt stays in run_state.json, the flock goes
    killed.communicate(timeout=60)
    assert state(run_dir)["kaggle"]["push_attempt"]["previous_version"] == 0
    res = tunix_rt(env, "push", *push_args(run_dir, good_bundle), "--push-settle", "60", timeout=180)
    assert res.code == 0, res.output
    assert "may still complete on Kaggle" in res.stderr and "not pushing again" in res.stderr
    assert versions(emu) == [1] and len(emu.calls("SaveKernel")) == 1


def test_the_previous_versions_complete_is_not_taken_for_the_new_one(emu: Emulator, good_bundle: Path,
                                                                      run_dir: Path, tmp_path: Path) -> None:
    """After the push Kaggle answers v1's COMPLETE for a while (stale status), past the stale grace (0 here).
    Before: accepted, pull got 0 files, evidence failed, and every rerun skipped pull. Now: v2 lists no output
    files yet, so its COMPLETE is not believed; the run waits for v2 and packages v2's outputs."""
    emu.seed_version(USER, SLUG, outputs={"old.txt": b"v1"})
    emu.set_faults(stale_polls=4)
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"),
                   "--stale-grace", "0", *POLL, "--json", timeout=300)
    assert res.code == 0, res.output
    ignored = [e for e in res.json_lines() if e["event"] == "stale_status_ignored"]
    assert ignored and "lists no output files" in ignored[0]["message"]
    st = state(run_dir)
    assert st["kaggle"]["version_number"] == 2 and st["kaggle"]["status"] == "COMPLETE"
    assert st["stages"]["pull"]["files"] > 0 and not (run_dir / "outputs" / "old.txt").exists()


def test_a_complete_without_outputs_is_retried_on_rerun_not_skipped(emu: Emulator, tmp_path: Path,
                                                                    run_dir: Path) -> None:
    """The state an earlier version left: wait recorded done with COMPLETE while the version still ran. Before:
    pull "done" with 0 files, evidence failed, and every rerun skipped pull and failed the same way. Now pull
    fails (exit 5) and undoes the wait; the rerun waits and pulls."""
    bundle = make_bundle(tmp_path / "b", files=training_outputs(run_dir.name, tmp_path), sleep_s=6)
    env = cli_env(emu)
    assert tunix_rt(env, "push", *push_args(run_dir, bundle)).code == 0
    st = state(run_dir)
    st["kaggle"].update(status="COMPLETE", finished_at="2026-01-01T00:00:00Z")
    st["stages"]["wait"] = {"status": "done", "kaggle_status": "COMPLETE"}
    (run_dir / "run_state.json").write_text(json.dumps(st), encoding="utf-8")
    args = ["run", *push_args(run_dir, bundle), "--output", str(tmp_path / "zip"), *POLL]
    first = tunix_rt(env, *args)
    assert first.code == 5, first.output
    assert "lists no output files" in first.stderr and "run again" in first.stderr
    st = state(run_dir)
    assert st["stages"]["pull"]["status"] == "failed" and st["stages"]["wait"]["status"] == "failed"
    again = tunix_rt(env, *args, timeout=300)
    assert again.code == 0, again.output
    st = state(run_dir)
    assert st["stages"]["wait"]["status"] == "done" and st["stages"]["pull"]["files"] > 0
    assert versions(emu) == [1] and len(_saves(emu)) == 1


def _complete_evidence(emu: Emulator, bundle: Path, run_dir: Path, tmp_path: Path) -> Path:
    """A folder holding a finished run's complete evidence (and no run state): a rehearsal's, say."""
    res = tunix_rt(cli_env(emu), "run", *push_args(run_dir, bundle), "--output", str(tmp_path / "zip"), *POLL,
                   timeout=300)
    assert res.code == 0, res.output
    other = run_dir.parent / "kept"
    other.mkdir()
    for name in ("run_manifest.json", "eval_summary.json", "kaggle_output_log.txt"):
        shutil.copy2(run_dir / name, other / name)
    return other


def test_complete_evidence_is_not_overwritten_without_force(emu: Emulator, good_bundle: Path, run_dir: Path,
                                                            tmp_path: Path) -> None:
    """Before: a new rehearse/run into the folder overwrote good evidence (and a bad input then lost it)."""
    kept = _complete_evidence(emu, good_bundle, run_dir, tmp_path)
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    saves = len(emu.calls("SaveKernel"))
    env = cli_env(emu)
    for args in (["rehearse", "--backend", "local", "--run-dir", str(kept)],
                 ["run", *push_args(kept, good_bundle, kernel_id=f"{USER}/other-kernel")]):
        res = tunix_rt(env, *args)
        assert res.code == 2, res.output
        assert "already holds complete evidence" in res.stderr and "--force" in res.stderr
        assert {p.name: p.read_bytes() for p in kept.iterdir()} == before
    assert len(emu.calls("SaveKernel")) == saves
    forced = tunix_rt(env, "run", *push_args(kept, good_bundle, kernel_id=f"{USER}/other-kernel"), "--force",
                      "--output", str(tmp_path / "zip2"), *POLL, timeout=300)
    assert forced.code == 0, forced.output
    assert versions(emu, USER, "other-kernel") == [1]
    # A pushed run resumes without --force: its rerun skips every stage.
    rerun = tunix_rt(env, "run", *push_args(run_dir, good_bundle), "--output", str(tmp_path / "zip"), *POLL)
    assert rerun.code == 0, rerun.output


def _tree(pid: int) -> set[int]:
    """Every process under ``pid`` now (the kernel included: jupyter_client gives it a session of its own)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = {int(k) for k in (task / "children").read_text().split()} - found
                found |= kids
                todo += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_during_a_local_rehearsal_end_the_kernel_group(sig: signal.Signals,
                                                                         tmp_path: Path) -> None:
    """Before: SIGTERM killed tunix-rt on the spot: papermill, its kernel and the trainer kept running,
    the temp folder stayed, the stage stayed `running`. Now: like Ctrl-C, exit 128+signal."""
    run_dir = tmp_path / "rehearsal"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "TUNIX_RT_JAX_CACHE": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "tunix_rt", "rehearse", "--backend", "local", "--run-dir",
                             str(run_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tree: set[int] = set()

        def kernel_started() -> bool:
            tree.update(_tree(proc.pid))
            return any("ipykernel" in _cmdline(p) for p in tree)

        _until(kernel_started, timeout=240, what="papermill and its kernel")
        time.sleep(1)
        tree.update(_tree(proc.pid))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, out[-2000:] + err[-2000:]
    assert f"interrupted ({sig.name})" in err
    _until(lambda: not [p for p in tree if _alive(p)], timeout=30, what="papermill, its kernel and the trainer to end")
    assert list(scratch.iterdir()) == []  # the emulated /kaggle tree is gone
    execute = state(run_dir)["stages"]["execute"]
    assert execute["status"] == "interrupted" and sig.name in execute["error"]


# ---- Docker (item 10, and item 3 for the container) --------------------------------------------------------

def _docker_client():
    from tunix_rt.runners import docker as runner

    if not runner.docker_available():
        if os.environ.get("CI"):
            pytest.fail(f"CI: no Docker daemon answers at {runner.docker_host()}")
        pytest.skip(f"no Docker daemon answers at {runner.docker_host()}")
    import docker

    return docker.DockerClient(base_url=runner.docker_host())


def _rehearsal_containers(client, run_dir: Path) -> list:
    from tunix_rt.runners.docker import LABEL_RUN_DIR

    return client.containers.list(all=True, filters={"label": f"{LABEL_RUN_DIR}={run_dir.resolve()}"})


@pytest.mark.docker
def test_sigterm_during_a_docker_rehearsal_removes_the_container(tmp_path: Path) -> None:
    """Before: the container kept running and writing into the run dir after tunix-rt died. Now: removed,
    exit 143, the execute stage recorded interrupted, the temp input folder gone."""
    client = _docker_client()
    run_dir = tmp_path / "rehearsal"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "TUNIX_RT_JAX_CACHE": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "tunix_rt", "rehearse", "--backend", "docker", "--run-dir",
                             str(run_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: any(c.status == "running" for c in _rehearsal_containers(client, run_dir))
               or proc.poll() is not None, timeout=1500, what="the rehearsal container")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-2000:] + err[-2000:]
    assert _rehearsal_containers(client, run_dir) == []
    assert list(scratch.iterdir()) == []
    assert state(run_dir)["stages"]["execute"]["status"] == "interrupted"
    client.close()


@pytest.mark.docker
def test_the_kernel_container_is_confined(tmp_path: Path) -> None:
    """no-new-privileges, every capability dropped but CHOWN/DAC_OVERRIDE/FOWNER, the pids and memory limits
    the flags give; the kernel still writes its outputs, and the container is gone after."""
    import nbformat
    from tunix_rt.runners import docker as runner

    client = _docker_client()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    probe = (
        "import json, pathlib, re\n"
        "status = pathlib.Path('/proc/self/status').read_text()\n"
        "def field(name): return re.search(name + r':\\s*(\\S+)', status).group(1)\n"
        "def first(*paths):\n"
        "    for p in paths:\n"
        "        if pathlib.Path(p).exists(): return pathlib.Path(p).read_text().strip()\n"
        "pathlib.Path('probe.json').write_text(json.dumps({'cap_eff': field('CapEff'),\n"
        "    'no_new_privs': field('NoNewPrivs'),\n"
        "    'pids_max': first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'),\n"
        "    'memory_max': first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')}))\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(probe)]
    nbformat.write(nb, bundle / "probe.ipynb")
    (bundle / "kernel-metadata.json").write_text(json.dumps({"code_file": "probe.ipynb"}), encoding="utf-8")
    run_dir = tmp_path / "run"
    image = runner.build_image(base_image=runner.default_base_image(), stream=None)
    outcome = runner.run_docker(bundle, run_dir, image=image, stream=None, memory="1g", pids_limit=256)
    assert outcome.ok, outcome.detail
    seen = json.loads((run_dir / "outputs" / "probe.json").read_text())
    wanted = sum(1 << bit for bit in (0, 1, 3))  # CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER
    assert int(seen["cap_eff"], 16) == wanted
    assert seen["no_new_privs"] == "1"
    assert seen["pids_max"] == "256"
    assert int(seen["memory_max"]) == 1 << 30
    assert _rehearsal_containers(client, run_dir) == []
    client.close()
