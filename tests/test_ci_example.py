"""The GitHub Actions example (examples/github-actions/kaggle-run.yml) as a hosted runner would run it: the
Kaggle job stays under the 6 h hosted-job limit with `--timeout` ending the wait inside it, and a re-run
restores run_state.json (and the pushed bundle) from an earlier attempt's artifact before `tunix-rt run`, so it
resumes instead of pushing again (issue 14 item 9)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / "examples" / "github-actions" / "kaggle-run.yml"
HOSTED_JOB_LIMIT_MIN = 360  # GitHub-hosted runners stop a job after 6 h
MARGIN_MIN = 10  # install, push, pull, package and the uploads need this much of the job, at least


def _kaggle_job() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["kaggle"]


def _step(job: dict, needle: str) -> tuple[int, dict]:
    found = [(i, s) for i, s in enumerate(job["steps"]) if needle in str(s.get("run", "")) + str(s.get("with", ""))]
    assert len(found) == 1, f"one step with {needle!r} expected, found {len(found)}"
    return found[0]


def test_the_kaggle_job_ends_its_wait_inside_the_hosted_job_limit() -> None:
    job = _kaggle_job()
    minutes = job["timeout-minutes"]
    assert 0 < minutes <= HOSTED_JOB_LIMIT_MIN
    _, run = _step(job, "tunix-rt run")
    argv = shlex.split(run["run"].replace("\\\n", " "))
    assert "--timeout" in argv, "without --timeout the wait outlives the job and the runner kills it"
    timeout_s = float(argv[argv.index("--timeout") + 1])
    assert 0 < timeout_s <= (minutes - MARGIN_MIN) * 60


def test_a_rerun_restores_the_run_state_before_running_and_every_attempt_keeps_it() -> None:
    job = _kaggle_job()
    run_dir = job["env"]["RUN_DIR"]
    run_index, run = _step(job, "tunix-rt run")
    assert '--run-dir "$RUN_DIR"' in run["run"]
    restore_index, restore = _step(job, "gh run download")
    assert restore_index < run_index, "the state must be back before `tunix-rt run` starts"
    assert "github.run_attempt" in restore["if"]  # attempt 1 has nothing to restore
    assert '--dir "$RUN_DIR"' in restore["run"] and "tunix-rt-state-" in restore["run"]
    assert job["permissions"]["actions"] == "read"
    upload_index, upload = _step(job, "tunix-rt-state-${{ github.run_attempt }}")
    assert upload_index > run_index and upload["if"] == "always()"  # also after exit 3 or a cancel
    assert upload["uses"].startswith("actions/upload-artifact@")
    paths = upload["with"]["path"].splitlines()
    assert "${{ env.RUN_DIR }}/run_state.json" in paths and "${{ env.RUN_DIR }}/bundle/" in paths
    assert run_dir == "submission_runs/m33_v1"
    # Artifact names must be unique per attempt: upload-artifact v4 refuses to overwrite within one run.
    names = [s["with"]["name"] for s in job["steps"] if "upload-artifact" in str(s.get("uses", ""))]
    assert all(re.search(r"\$\{\{ github\.run_attempt \}\}", n) for n in names), names


def test_the_nightly_sweep_parses_and_ends_inside_the_hosted_job_limit() -> None:
    """examples/github-actions/nightly-sweep.yml: every `tunix-rt` line parses with the real CLI parser, and
    the Kaggle job's `--timeout` ends the sweep (exit 3, resumable) before the runner kills the job."""
    from tunix_rt.cli import build_parser

    workflow = yaml.safe_load((WORKFLOW.parent / "nightly-sweep.yml").read_text(encoding="utf-8"))
    parser = build_parser()
    sweeps = []
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            for line in str(step.get("run", "")).replace("\\\n", " ").splitlines():
                line = re.sub(r"\$\{\{[^}]*\}\}|\$\{?KAGGLE_USERNAME\}?", "ci", line.strip().rstrip("&"))
                if line.startswith("tunix-rt "):
                    args = parser.parse_args(shlex.split(line)[1:])
                    if args.command == "sweep":
                        sweeps.append((name, job, args))
    assert {name for name, _, _ in sweeps} == {"emulator", "kaggle"}
    (_, job, args), = [s for s in sweeps if s[0] == "kaggle"]
    assert 0 < args.timeout <= (min(job["timeout-minutes"], HOSTED_JOB_LIMIT_MIN) - MARGIN_MIN) * 60
    assert args.max_concurrent == 2 and len(args.set) == 2
