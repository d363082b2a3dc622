"""The stages every flow shares (engine.py): ``bundle`` and ``execute`` of the process runners, then
``evidence`` → ``validate`` → ``package`` after any runner.

* ``bundle``: build ``<run-dir>/bundle/`` (bundle.py) and record it.
* ``execute``: run the notebook with a process runner (local or Docker; ``auto`` may fall back from Docker to
  local) in a clean ``outputs/`` + ``raw_log/``; a notebook that fails is recorded ``failed`` and the flow goes
  on, so the failure still gets its evidence.
* ``evidence``: fill the evidence from the outputs (evidence.py) and draw the run report (run_report.py). A
  run that did not complete (the notebook failed, Kaggle ended in ERROR/cancelled, outputs broken) ends the
  flow here with exit 1: there is nothing to validate or submit. A training session cut for time (evidence
  status ``cut_for_time``: it checkpointed before its deadline) goes on to ``validate``.
* ``validate``: the one validation of a flow (validate.py); problems end it with exit 2.
* ``package``: the submission zip (package.py), without validating again; skipped for a session cut for time
  (no evaluation to submit: the next session of a chain resumes it, chain.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import BundleInputs
from .engine import BaseStage, Context, Stage, StageResult
from .errors import EXIT_KERNEL_FAILED, EXIT_USAGE, TunixRtError
from .kernel_status import KernelStatus
from .layout import BUNDLE_DIR
from .runners import ProcessRunner, Runner, RunOutcome, clear_previous_run

MAX_RECORDED_PROBLEMS = 20


class BundleStage(BaseStage):
    """Build the bundle for a run on this machine (rehearse, ``tunix-rt bundle``)."""

    name = "bundle"

    def __init__(self, inputs: BundleInputs) -> None:
        self.inputs = inputs

    def run(self, ctx: Context) -> StageResult:
        kaggle = ctx.state.kaggle
        if kaggle is not None and kaggle.pushed:  # its bundle is what Kaggle ran: evidence names its sha256
            raise TunixRtError(f"{ctx.run_dir}: this run pushed {kaggle.label}; its bundle stays as pushed "
                               "(use a new --run-dir)", EXIT_USAGE)
        info = self.inputs.prepare(ctx.run_dir).write(ctx.run_dir)
        state = ctx.state
        state.bundle = info.state_record()
        state.mode, state.accelerator = info.mode, info.accelerator
        ctx.reporter.event("bundle", f"bundle: {info.notebook_path} ({info.size_bytes:,} bytes, sha256 {info.sha256})",
                           sha256=info.sha256, size_bytes=info.size_bytes)
        return StageResult({"sha256": info.sha256}, value=info)


class ExecuteStage(BaseStage):
    """Run the bundle's notebook with a process runner, in a clean ``outputs/`` and ``raw_log/``."""

    name = "execute"

    def __init__(self, runner: ProcessRunner) -> None:
        self.runner = runner

    def run(self, ctx: Context) -> StageResult:
        run_dir, state = ctx.run_dir, ctx.state
        clear_previous_run(run_dir)
        state.platform = self.runner.name
        state.raw_log = None
        outcome = self.runner.execute(run_dir / BUNDLE_DIR, run_dir, ctx.reporter.stream)
        state.platform = outcome.backend  # auto's fallback may have run another backend
        state.raw_log = outcome.log_path.resolve().relative_to(run_dir.resolve()).as_posix()
        fallback = {"fallback_from": self.runner.name} if outcome.backend != self.runner.name else {}
        return StageResult({"backend": outcome.backend, "exit_code": outcome.exit_code,
                            "wall_s": round(outcome.wall_s, 1), "detail": outcome.detail, **fallback},
                           value=outcome, status="done" if outcome.ok else "failed")


class EvidenceStage(BaseStage):
    """Fill the evidence and draw the report; a run that did not complete ends the flow (exit 1)."""

    name = "evidence"

    def done_detail(self, ctx: Context) -> str:
        rec = ctx.state.stage(self.name)
        return f" ({rec.details.get('evidence_status')})" if rec else ""

    def run(self, ctx: Context) -> StageResult:
        from .evidence import fill_evidence
        from .run_report import write_report

        outcome: RunOutcome | None = ctx.values.get("execute")
        failure = None if outcome is None or outcome.ok else f"{outcome.backend} rehearsal failed: {outcome.detail}"
        reporter = ctx.reporter
        try:
            evidence = fill_evidence(ctx.run_dir, state=ctx.state, failure=failure,
                                     secrets=reporter.secrets)
        except TunixRtError as exc:
            if failure is None:
                raise
            reporter.event("evidence", f"evidence: not written ({exc.message})", status=None)
            return StageResult({"evidence_status": None}, status="failed", stop=EXIT_KERNEL_FAILED,
                               error=_kernel_failed(outcome))
        reporter.event("evidence", f"evidence: {evidence.status}"
                       + (f" ({evidence.failure_message})" if evidence.failure_message else ""),
                       status=evidence.status, failure_message=evidence.failure_message)
        report = write_report(ctx.run_dir)  # report.html + loss.png, from the evidence and outputs just written
        reporter.event("report", f"report: {report.html} ({report.html_bytes:,} bytes) and {report.png.name}",
                       path=str(report.html))
        details: dict[str, Any] = {"evidence_status": evidence.status}
        if (evidence.ok or evidence.cut_for_time) and _kaggle_ok(ctx):  # a cut session's evidence validates too
            return StageResult(details, value=evidence)
        error = _kernel_failed(outcome) if failure else f"the run did not complete: {evidence.failure_message}"
        return StageResult(details, value=evidence, stop=EXIT_KERNEL_FAILED, error=error)


def _kaggle_ok(ctx: Context) -> bool:
    kaggle = ctx.state.kaggle
    return kaggle is None or not kaggle.pushed or kaggle.status == KernelStatus.COMPLETE


def _kernel_failed(outcome: RunOutcome | None) -> str:
    assert outcome is not None
    return f"the notebook failed on {outcome.backend} ({outcome.detail}); log: {outcome.log_path}"


class ValidateStage(BaseStage):
    """The flow's one validation of its evidence; problems end it with exit 2."""

    name = "validate"

    def run(self, ctx: Context) -> StageResult:
        from .validate import validate_run_dir

        problems = validate_run_dir(ctx.run_dir, redactor=ctx.reporter.redactor)
        for problem in problems:
            ctx.reporter.event("invalid", f"invalid: {problem}", **problem.as_dict())
        if not problems:
            ctx.reporter.event("validated", "evidence validates", stage="validate")
            return StageResult({"problems": 0}, value=problems)
        shown = "; ".join(map(str, problems[:3])) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        return StageResult({"problems": len(problems), "first": [str(p) for p in problems[:MAX_RECORDED_PROBLEMS]]},
                           value=problems, status="failed", stop=EXIT_USAGE,
                           error=f"{ctx.run_dir}: evidence does not validate: {shown}")


class PackageStage(BaseStage):
    """The submission zip of a run whose evidence this flow validated."""

    name = "package"

    def __init__(self, output: Path, *, validated: bool = True) -> None:
        self.output = Path(output)
        self.validated = validated

    def done_detail(self, ctx: Context) -> str:
        rec = ctx.state.stage(self.name)
        return f" ({rec.details.get('zip')})" if rec else ""

    def skip(self, ctx: Context) -> str | None:
        from .evidence import CUT_FOR_TIME

        evidence = ctx.state.stage("evidence")
        if evidence is not None and evidence.details.get("evidence_status") == CUT_FOR_TIME:
            return "the session was cut for time (a checkpoint, no evaluation): nothing to submit"
        return None

    def run(self, ctx: Context) -> StageResult:
        from .package import package

        result = package(ctx.run_dir, self.output, validated=self.validated, redactor=ctx.reporter.redactor)
        ctx.reporter.event("packaged", f"submission zip: {result.path}", stage="package", zip=str(result.path),
                           sha256=result.sha256)
        return StageResult({"zip": str(result.path), "sha256": result.sha256}, value=result)


def flow_stages(runner: Runner, inputs: BundleInputs, *, package_to: Path | None = None) -> list[Stage]:
    """The one flow every runner shares: its stages, then ``evidence`` → ``validate`` (→ ``package`` into
    ``package_to``). rehearse: a process runner, no package; run: the Kaggle runner and the zip."""
    stages: list[Stage] = [*runner.stages(inputs), EvidenceStage(), ValidateStage()]
    if package_to is not None:
        stages.append(PackageStage(package_to))
    return stages
