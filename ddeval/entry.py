"""The ``ddeval`` command's entry point, kept free of heavy imports.

Importing the CLI loads torch (seconds). An interrupt (Ctrl-C, SIGTERM) that lands then, or while the
arguments are parsed, must end as quietly as one during the work: one line and exit code 130, no traceback.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

EXIT_INTERRUPTED = 130  # also ddeval.cli's code for an interrupt
INTERRUPTED = "interrupted: finished units are kept; rerun the same command (same --out) to resume."


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def caused_by_interrupt(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised while handling, an interrupt.

    An interrupt landing inside a C extension's import (matplotlib's ``ft2font`` in CI) surfaces as
    ``ImportError: initialization failed`` chained to the KeyboardInterrupt; it must still end as an
    interrupt (exit 130), not as a crash."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def terminate_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C so cleanup (``finally`` blocks, NNI's stop) runs; returns the old handler."""
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; an interrupt before the CLI's own handling starts ends with :data:`EXIT_INTERRUPTED`."""
    previous = None
    code: int | None = None
    try:
        previous = terminate_as_interrupt()
        from ddeval.cli import main as cli_main

        code = cli_main(argv)
        return code
    except BaseException as err:
        if not caused_by_interrupt(err):
            raise
        print("\n" + INTERRUPTED, file=sys.stderr)
        code = EXIT_INTERRUPTED
        return code
    finally:
        if code == EXIT_INTERRUPTED:
            _ignore_interrupts()
        elif previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _ignore_interrupts() -> None:
    """The interrupt has been handled and the process is ending: a second Ctrl-C or SIGTERM arriving during
    interpreter shutdown must not turn the clean exit 130 into death by signal (seen once in CI as -2)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
