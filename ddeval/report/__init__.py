"""Reports of a run directory: figures (:mod:`ddeval.report.plots`) and Markdown/HTML (:mod:`.render`).

``render_run(run_dir)`` reads ``results.json`` (and ``manifest.json`` when present) and writes
``report.md``, a self-contained ``report.html`` and ``plots/*.png``.
"""

from __future__ import annotations

from ddeval.report.render import render_run

__all__ = ["render_run"]
