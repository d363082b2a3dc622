"""Check evidence folders: the JSON Schemas plus the cross-checks a schema cannot express.

Each problem is one line ``<path>: <field>: <problem>``. The same validator serves ``tunix-rt validate``,
``tunix-rt package`` (which refuses invalid evidence) and ``tests/test_evidence_files.py`` (CI).

Checks beyond the schema:

* ``run_version`` equals the folder's name in both files, and both files agree on status and model;
* ``primary_score`` equals ``metrics.answer_correctness`` (and ``n_correct / n_items`` agrees with it);
* on platform ``kaggle`` the model must be one the competition allows (:data:`ALLOWED_KAGGLE_MODELS`);
* a rehearsal keeps its true model id: a Gemma id with a parameter count far below Gemma's is refused as a
  false claim (the evidence filler copies the id from the kernel's own run_result.json);
* ``kaggle_output_log.txt`` exists, is not empty and holds no credential (nor do the JSON files);
* every evidence file is a regular file with one link (no symlink, no hard link to a host file);
* the JSON files are read strictly: NaN/Infinity and duplicate keys are errors;
* a complete run names its eval set and the eval set's sha256;
* no file names a folder of this machine (the checkout, the virtualenv, the home folder) or one of tunix-rt's
  temporary folders (:mod:`tunix_rt.hostpaths`): evidence is committed and shared.

Only the three evidence files are read, never the run directory's ignored folders (``outputs/``,
``bundle/``, ``raw_log/``): a fresh clone validates exactly what was committed. The schemas ``$ref`` the
blocks they share with training's output contract (``tunix_rt.training.contract``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tunix_rt.training import contract

from . import hostpaths, paths
from .evidence import LOG_FILE, MANIFEST_FILE, SUMMARY_FILE
from .fsutil import link_problem
from .layout import SWEEP_FILE
from .redact import Redactor

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MANIFEST_SCHEMA = "run_manifest.schema.json"
SUMMARY_SCHEMA = "eval_summary.schema.json"

# The competition allows these two (Gemma 2 2B, Gemma 3 1B); anything else on Kaggle is not a submission.
ALLOWED_KAGGLE_MODELS = ("google/gemma-3-1b-it", "google/gemma-2-2b")
# The smallest allowed model has about 1 B parameters; a "Gemma" far below that was not Gemma.
GEMMA_MIN_PARAMS = 500_000_000
_SCORE_TOLERANCE = 1e-6
_MAX_MESSAGE = 160


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one evidence file."""

    path: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.problem}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "field": self.field, "problem": self.problem}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in ``tunix_rt/schemas/``."""
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@cache
def _contract_registry() -> Any:
    """training's contract schemas, under the ``$id`` the evidence schemas ``$ref``."""
    from referencing import Registry, Resource

    return Registry().with_resources(
        (f"{contract.SCHEMA_URI}{name}", Resource.from_contents(contract.schema(name))) for name in contract.names())


def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator  # imported here: the CLI's start-up stays light

    return Draft202012Validator(load_schema(name), registry=_contract_registry())


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def schema_problems(doc: Any, schema: str, shown: str, redactor: Redactor | None = None) -> list[Problem]:
    """The schema's complaints about ``doc``, one :class:`Problem` each, in a stable order. Messages
    quote values, so they are redacted like everything else tunix-rt prints."""
    from jsonschema.exceptions import best_match

    redact = (redactor or Redactor()).redact
    out = []
    for err in _validator(schema).iter_errors(doc):
        where = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            for key in err.validator_value:
                if key not in err.instance:
                    out.append(Problem(shown, f"{where}.{key}" if where else key, "missing required field"))
            continue
        # For anyOf/oneOf the useful text is in the branch that came closest.
        message = best_match(err.context).message if err.context else err.message
        out.append(Problem(shown, where or "(root)", _short(redact(message))))
    return sorted(set(out), key=lambda p: (p.field, p.problem))


class StrictJSONError(ValueError):
    """JSON that Python would read but the standard does not allow (NaN, Infinity) or that is ambiguous (a
    key given twice: which value counts depends on the reader)."""


def _no_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity and duplicate keys (and nesting deeper than Python's
    recursion limit), raising ValueError (:class:`StrictJSONError`) for each: evidence is read strictly."""
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise StrictJSONError("nested too deeply") from None


def _load(path: Path, shown: str, problems: list[Problem]) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(Problem(shown, "(file)", "missing"))
        return None
    linked = _link_problem(path)
    if linked:
        problems.append(Problem(shown, "(file)", linked))
        return None
    try:
        doc = loads_strict(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError and StrictJSONError are ValueErrors
        problems.append(Problem(shown, "(file)", _short(f"not valid JSON: {exc}")))
        return None
    if not isinstance(doc, dict):
        problems.append(Problem(shown, "(root)", "not a JSON object"))
        return None
    return doc


def _scan(path: Path, shown: str, redactor: Redactor, machine: hostpaths.HostPaths) -> list[Problem]:
    """Credentials and machine folders anywhere in the file (names of kinds, never the values)."""
    found: set[str] = set()
    folders: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        while block := fh.read(1 << 20):
            # Whole lines only, so a credential or a path is never cut between two reads.
            block += fh.readline()
            found.update(redactor.find(block))
            folders.update(machine.find(block))
    return ([Problem(shown, "(content)", f"contains a credential ({kind})") for kind in sorted(found)]
            + [Problem(shown, "(content)", f"names {label} of the machine that ran; evidence must be portable")
               for label in sorted(folders)])


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= _SCORE_TOLERANCE
    return a == b


def validate_run_dir(run_dir: Path, *, redactor: Redactor | None = None) -> list[Problem]:
    """Every problem with the evidence in ``run_dir`` (empty: valid)."""
    run_dir = Path(run_dir)
    shown_dir = str(run_dir)
    if not run_dir.is_dir():
        return [Problem(shown_dir, "(folder)", "not a directory")]
    redactor = redactor or Redactor()
    machine = hostpaths.for_validation(paths.project_root())
    problems: list[Problem] = []
    folder = run_dir.resolve().name
    m_shown, s_shown, l_shown = (str(run_dir / n) for n in (MANIFEST_FILE, SUMMARY_FILE, LOG_FILE))
    manifest = _load(run_dir / MANIFEST_FILE, m_shown, problems)
    summary = _load(run_dir / SUMMARY_FILE, s_shown, problems)

    if manifest is not None:
        problems += schema_problems(manifest, MANIFEST_SCHEMA, m_shown, redactor)
        problems += _scan(run_dir / MANIFEST_FILE, m_shown, redactor, machine)
        problems += _run_version_problems(manifest, folder, m_shown)
        problems += _model_problems(manifest, m_shown)
    if summary is not None:
        problems += schema_problems(summary, SUMMARY_SCHEMA, s_shown, redactor)
        problems += _scan(run_dir / SUMMARY_FILE, s_shown, redactor, machine)
        problems += _run_version_problems(summary, folder, s_shown)
        problems += _score_problems(summary, s_shown)
        problems += _eval_set_problems(summary, s_shown)
    if manifest is not None and summary is not None:
        for key in ("status", "model_id"):
            if manifest.get(key) != summary.get(key):
                problems.append(Problem(s_shown, key, f"{summary.get(key)!r} differs from {MANIFEST_FILE}'s "
                                                      f"{manifest.get(key)!r}"))

    log = run_dir / LOG_FILE
    if not log.is_file():
        problems.append(Problem(l_shown, "(file)", "missing"))
    elif _link_problem(log):
        problems.append(Problem(l_shown, "(file)", str(_link_problem(log))))
    elif not _has_text(log):
        problems.append(Problem(l_shown, "(file)", "empty (it must hold the console output or a note)"))
    else:
        problems += _scan(log, l_shown, redactor, machine)
    return problems


def _has_text(path: Path) -> bool:
    with open(path, "rb") as fh:
        while block := fh.read(1 << 16):
            if block.strip():
                return True
    return False


def _run_version_problems(doc: dict[str, Any], folder: str, shown: str) -> list[Problem]:
    if doc.get("run_version") == folder:
        return []
    found = doc.get("run_version")
    return [Problem(shown, "run_version", f"{found!r} does not match the folder name {folder!r}")]


def _link_problem(path: Path) -> str | None:
    """An evidence file must be a regular file with one link: a symlink or a hard link could put a host file
    (``~/.ssh/…``, ``.git/config``) into the evidence under an evidence file's name."""
    return link_problem(path)


def _eval_set_problems(summary: dict[str, Any], shown: str) -> list[Problem]:
    """A complete run names the eval set it was scored on and that file's sha256 (packaging puts exactly that
    file in the zip, checked against the sha256)."""
    if summary.get("status") != "complete":
        return []
    out = []
    if not isinstance(summary.get("eval_set"), str) or not summary["eval_set"]:
        out.append(Problem(shown, "eval_set", "a complete run must name the eval set it was scored on"))
    sha = summary.get("eval_set_sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        out.append(Problem(shown, "eval_set_sha256", "a complete run must record its eval set's sha256"))
    return out


def _score_problems(summary: dict[str, Any], shown: str) -> list[Problem]:
    out = []
    metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
    primary, correctness = summary.get("primary_score"), metrics.get("answer_correctness")
    if not _eq(primary, correctness):
        out.append(Problem(shown, "primary_score",
                           f"{primary!r} does not equal metrics.answer_correctness {correctness!r}"))
    n_items, n_correct = summary.get("n_items"), metrics.get("n_correct")
    if (isinstance(n_items, int) and n_items > 0 and isinstance(n_correct, int)
            and isinstance(correctness, (int, float)) and not _eq(n_correct / n_items, correctness)):
        out.append(Problem(shown, "metrics.answer_correctness",
                           f"{correctness!r} disagrees with n_correct/n_items = {n_correct}/{n_items}"))
    n_pred = summary.get("n_predictions")
    if isinstance(n_items, int) and isinstance(n_pred, int) and n_pred != n_items:
        out.append(Problem(shown, "n_predictions", f"{n_pred} predictions for {n_items} eval items"))
    return out


def _model_problems(manifest: dict[str, Any], shown: str) -> list[Problem]:
    out = []
    env = manifest.get("environment") if isinstance(manifest.get("environment"), dict) else {}
    platform = env.get("platform")
    model_id = manifest.get("model_id")
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    claims_model = model_id is not None or manifest.get("status") == "complete"
    if platform == "kaggle" and claims_model and model_id not in ALLOWED_KAGGLE_MODELS:
        out.append(Problem(shown, "model_id", f"{model_id!r} is not a competition model on platform kaggle "
                                              f"(allowed: {', '.join(ALLOWED_KAGGLE_MODELS)})"))
    params = model.get("param_count")
    if model_id in ALLOWED_KAGGLE_MODELS and isinstance(params, int) and params < GEMMA_MIN_PARAMS:
        out.append(Problem(shown, "model_id", f"claims {model_id} but param_count is {params:,}; "
                                              f"a rehearsal must keep its true model id"))
    return out


def default_run_dirs(base: Path | None = None) -> list[Path]:
    """Every run folder under ``submission_runs/`` (hidden folders skipped), sorted; a sweep folder
    (``tunix-rt sweep``: it holds sweep.json) stands for its points' run folders."""
    base = base or paths.submission_runs_dir()
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (folder / SWEEP_FILE).is_file():
            out += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            out.append(folder)
    return out


def validate_many(run_dirs: Iterable[Path], *, redactor: Redactor | None = None) -> list[Problem]:
    """Problems of all ``run_dirs``, in order."""
    redactor = redactor or Redactor()
    out: list[Problem] = []
    for run_dir in run_dirs:
        out += validate_run_dir(run_dir, redactor=redactor)
    return out
