"""ddeval: the evaluation harness for distilled data sets (accuracy, privacy, NAS proxy, reports).

Optional heavy parts (NNI, Opacus) are imported only by the modules that use them, never from here.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check", "run"]


def run(suite=None, *, overrides=None, run_dir=None, device="auto", progress=None):  # noqa: ANN001, ANN201
    """Run a suite (path, packaged name, or mapping) end to end; returns the run directory's results dict."""
    from ddeval.pipeline import run_suite

    return run_suite(suite, overrides=overrides, run_dir=run_dir, device=device, progress=progress)


def check(run_dir, baseline, *, tolerances=None):  # noqa: ANN001, ANN201
    """Compare a run (directory, results.json or results dict) with a baseline file; returns a Comparison
    whose ``failed`` says whether anything regressed and ``table()`` shows what moved."""
    from ddeval.regression import check as _check

    return _check(run_dir, baseline, tolerances=tolerances)
