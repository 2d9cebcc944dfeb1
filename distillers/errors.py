"""The one exception type for mistakes a user can fix (bad name, bad file, bad config value).

Its message is a complete sentence that says what went wrong and how to fix it; the CLI prints it as one
line and exits with a non-zero status instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DDError(Exception):
    """A user-fixable error. ``str(err)`` is the single line shown to the user."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


class Diverged(DDError):
    """A distillation's loss or synthetic parameters became NaN or Inf at ``iteration`` (1-based) of ``total``.

    ``last_good`` is the synthetic set of the last iteration that was finite (set once the method packaged
    it), so a long run that diverges late still leaves something to inspect or to restart from.
    """

    def __init__(self, message: str, iteration: int, total: int, last_good: object = None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.total = total
        self.last_good = last_good
