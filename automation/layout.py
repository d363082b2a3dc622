"""File and folder names of a run directory and of the bundle, defined once.

A run directory (``run_version`` is the folder's name)::

    <run-dir>/
      run_state.json        the typed run state (runstate.py), written atomically after every stage
      bundle/               the pushable folder (bundle.py owns it): kernel-metadata.json + kaggle_submission.ipynb
      outputs/              the kernel's working directory after the run (= /kaggle/working)
        output/             training outputs: metrics.jsonl predictions.jsonl eval_results.json run_result.json
      raw_log/              the raw console log: console.log (local/docker) or <slug>.log (Kaggle JSON array)
      run_manifest.json     evidence (committed; names in evidence.py)
      eval_summary.json     evidence (committed)
      kaggle_output_log.txt evidence (committed)
      report.html, loss.png the run report, drawn from the above at rehearse/pull time (committed; run_report.py)
      tunix_rt_traceback.txt the redacted traceback of an unexpected error (exit 70; crash.py), if one happened

A chain of sessions (``run --sessions N``, chain.py) is a folder of such run directories::

    <chain-dir>/chain.json  the chain summary; <chain-dir>/s1/ … s<N>/  one run directory per session
"""

from __future__ import annotations

from tunix_rt.training import contract

STATE_FILE = "run_state.json"
BUNDLE_DIR = "bundle"
OUTPUTS_DIR = "outputs"
TRAIN_OUTPUT_SUBDIR = contract.OUTPUT_SUBDIR  # inside outputs/ (the kernel's working dir): where training writes
RAW_LOG_DIR = "raw_log"

NOTEBOOK_NAME = "kaggle_submission.ipynb"  # the kernel notebook: kernel/'s template and the bundle's copy
METADATA_NAME = "kernel-metadata.json"  # what `kaggle kernels push` reads from the bundle folder
EXECUTED_NOTEBOOK = "__notebook__.ipynb"  # papermill's executed copy, in the working dir as on Kaggle
CONSOLE_LOG = "console.log"  # raw_log/ file of the local and Docker runners
SWEEP_FILE = "sweep.json"  # a sweep (tunix-rt sweep): its plan, in the sweep's folder (sweep_plan.py)
CHAIN_FILE = "chain.json"  # a chain of sessions (run --sessions): the summary in the chain's folder (chain.py)
TRACEBACK_FILE = "tunix_rt_traceback.txt"  # an unexpected error's redacted traceback (crash.py)


def bundle_notebook() -> str:
    """The bundle's notebook, relative to the run directory."""
    return f"{BUNDLE_DIR}/{NOTEBOOK_NAME}"


def kaggle_log(slug: str) -> str:
    """The raw Kaggle log pulled for kernel ``slug``, relative to the run directory."""
    return f"{RAW_LOG_DIR}/{slug}.log"
