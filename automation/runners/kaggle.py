"""The Kaggle runner: the stages that take a run from its inputs to ``outputs/`` + ``raw_log/`` on Kaggle.

``preflight`` → ``bundle`` → ``push`` → ``wait`` → ``pull``; each stage is a thin adapter over the module that
does the work (push.py, wait.py, pull.py) and hands it the run state the command loaded:

* ``preflight`` (not recorded, writes nothing): kernel id, credentials, owner, quota, the kernel's versions;
* ``bundle``: the bundle with the kernel's title, the model sources checked, written once (bundle.py);
* ``push``: SaveKernel once; skipped, saying so, when this run already pushed;
* ``wait``: until the version ends (skipped by a resumed ``run`` when an earlier wait saw the end);
* ``pull``: the outputs and the log (``tunix-rt pull`` first asks Kaggle whether the version ended).

The API client is made on first use and shared by the stages (a command that skips them all never touches the
network); the log-stream client is separate (a long read timeout).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..bundle import BundleInputs
from ..engine import BaseStage, Context, StageResult
from ..errors import EXIT_API, EXIT_USAGE, TunixRtError
from ..kernel_status import KernelStatus
from ..layout import BUNDLE_DIR
from ..push import PushOptions, PushPlan, check_already_pushed, plan_push, push
from ..wait import WaitOptions, wait

if TYPE_CHECKING:
    from ..engine import Stage
    from ..kaggle_client import KaggleClient


class KaggleRunner:
    """The runner whose notebook runs on Kaggle (see the module docstring)."""

    name = "kaggle"

    def __init__(self, client_factory: Callable[[], KaggleClient], *,
                 stream_factory: Callable[[], KaggleClient] | None = None,
                 push_options: PushOptions | None = None, wait_options: WaitOptions | None = None) -> None:
        self._factory = client_factory
        self.stream_factory = stream_factory
        self.push_options = push_options or PushOptions()
        self.wait_options = wait_options or WaitOptions()
        self._client: KaggleClient | None = None

    def client(self, ctx: Context) -> KaggleClient:
        """The API client (connected once; its credentials join the reporter's redactor)."""
        if self._client is None:
            self._client = self._factory()
            ctx.reporter.add_secrets(self._client.credentials.secrets)
        return self._client

    def push_stages(self, inputs: BundleInputs) -> list[Stage]:
        return [PreflightStage(self, inputs), KaggleBundleStage(self, inputs), PushStage(self, inputs)]

    def stages(self, inputs: BundleInputs) -> Sequence[Stage]:
        return [*self.push_stages(inputs), WaitStage(self), PullStage(self)]


def _pushed(ctx: Context) -> bool:
    return ctx.state.kaggle is not None and ctx.state.kaggle.pushed


class PreflightStage(BaseStage):
    """Everything checked before a file is written (push.py ``plan_push``); value: the :class:`PushPlan`."""

    name = "preflight"
    record = False

    def __init__(self, runner: KaggleRunner, inputs: BundleInputs) -> None:
        self.runner, self.inputs = runner, inputs

    def skip(self, ctx: Context) -> str | None:
        return "already pushed" if _pushed(ctx) else None

    def run(self, ctx: Context) -> StageResult:
        plan = plan_push(self.inputs.kernel_id or "", self.inputs.accelerator, self.runner.push_options,
                         self.runner.client(ctx), ctx.reporter)
        return StageResult(value=plan)


class KaggleBundleStage(BaseStage):
    """The bundle to push, with the kernel's title and checked model sources, written once."""

    name = "bundle"

    def __init__(self, runner: KaggleRunner, inputs: BundleInputs) -> None:
        self.runner, self.inputs = runner, inputs

    def skip(self, ctx: Context) -> str | None:
        if _pushed(ctx):
            return "already pushed; the bundle stays as it was pushed"
        kaggle = ctx.state.kaggle
        if kaggle is not None and kaggle.push_attempt is not None and (ctx.run_dir / BUNDLE_DIR).is_dir():
            return "a push of this bundle may have reached Kaggle; keeping it as it is"
        return None

    def run(self, ctx: Context) -> StageResult:
        from .. import preflight

        plan: PushPlan = ctx.values["preflight"]
        prepared = self.inputs.prepare(ctx.run_dir, title=plan.title)
        if plan.accel.kind != "cpu":
            preflight.check_model_sources(self.runner.client(ctx), list(prepared.model_sources), ctx.reporter.warn)
        info = prepared.write(ctx.run_dir)
        state = ctx.state
        state.bundle = info.state_record()
        state.mode = info.mode or self.inputs.mode
        ctx.reporter.event("bundle", f"bundle: {info.notebook_path} ({info.size_bytes:,} bytes, sha256 "
                           f"{info.sha256})", sha256=info.sha256, size_bytes=info.size_bytes)
        return StageResult({"sha256": info.sha256}, value=info)


class PushStage(BaseStage):
    """SaveKernel once per run (push.py)."""

    name = "push"

    def __init__(self, runner: KaggleRunner, inputs: BundleInputs) -> None:
        self.runner, self.inputs = runner, inputs

    def skip(self, ctx: Context) -> str | None:
        kaggle = check_already_pushed(ctx.state, self.inputs.kernel_id or "")
        if kaggle is None:
            return None
        return f"already pushed {kaggle.label}; not pushing again (one push per run)"

    def run(self, ctx: Context) -> StageResult:
        plan: PushPlan | None = ctx.values.get("preflight")
        if plan is None:  # preflight skipped: only a pushed run skips it, and then push skips too
            raise TunixRtError(f"{ctx.run_dir}: nothing to push", EXIT_USAGE)
        result = push(ctx.state, plan, ctx.run_dir / BUNDLE_DIR, self.runner.push_options, self.runner.client(ctx),
                      ctx.reporter)
        return StageResult({"version_number": result.version_number, "how": result.how}, value=result)


class WaitStage(BaseStage):
    """Poll until the pushed version ends (wait.py); value: the :class:`~tunix_rt.wait.WaitResult`."""

    name = "wait"

    def __init__(self, runner: KaggleRunner) -> None:
        self.runner = runner

    def done_detail(self, ctx: Context) -> str:
        kaggle = ctx.state.kaggle
        return f" ({kaggle.status})" if kaggle is not None else ""

    def run(self, ctx: Context) -> StageResult:
        result = wait(ctx.state, self.runner.wait_options, lambda: self.runner.client(ctx), ctx.reporter,
                      self.runner.stream_factory)
        return StageResult({"kaggle_status": str(result.status), "api_calls": result.api_calls}, value=result)


class PullStage(BaseStage):
    """The outputs and the raw log (pull.py); ``tunix-rt pull`` first checks that the version ended."""

    name = "pull"

    def __init__(self, runner: KaggleRunner) -> None:
        self.runner = runner

    def run(self, ctx: Context) -> StageResult:
        from ..pull import check_finished, download_outputs

        client = self.runner.client(ctx)
        check_finished(ctx.state, client)
        result = download_outputs(ctx.state, client, ctx.reporter)
        if not result.files and not result.refused:
            _not_complete_yet(ctx)
        details: dict[str, Any] = result.details()
        return StageResult(details, value=result)


def _not_complete_yet(ctx: Context) -> None:
    """A version taken for COMPLETE that lists no output file did not complete as far as this run can tell
    (the previous version's COMPLETE taken for it, or Kaggle not listing its outputs yet): the wait is undone
    (``wait`` stage failed, the status back to PUSHED) and pull fails, so a rerun waits and pulls again
    instead of skipping both and failing the same way forever (issue 14). Exit 5."""
    kaggle = ctx.state.kaggle
    if kaggle is None or kaggle.status != KernelStatus.COMPLETE:
        return  # ERROR / cancelled: no outputs is a possible result; evidence says the run failed
    label = kaggle.label
    kaggle.status, kaggle.finished_at, kaggle.failure_message = KernelStatus.PUSHED, None, None
    why = f"{label} was taken for COMPLETE but lists no output files"
    ctx.state.mark("wait", "failed", error=why)
    raise TunixRtError(f"{why}; run again to wait for it and pull again", EXIT_API)
