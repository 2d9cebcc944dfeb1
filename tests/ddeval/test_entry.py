"""The CLI's interrupt handling: an interrupt that surfaces as another exception still exits 130."""

from __future__ import annotations

import pytest

from ddeval import cli, entry


def _interrupted_import():
    """What pybind11 raises when a KeyboardInterrupt lands inside a C extension's module init."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as interrupt:
        raise ImportError("initialization failed") from interrupt


def test_caused_by_interrupt_follows_the_chain():
    with pytest.raises(ImportError) as info:
        _interrupted_import()
    assert entry.caused_by_interrupt(info.value)
    assert entry.caused_by_interrupt(KeyboardInterrupt())
    assert not entry.caused_by_interrupt(ImportError("no module named x"))
    looped = ValueError("a")
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped  # a cycle must not hang
    assert not entry.caused_by_interrupt(looped)


def test_interrupted_import_during_a_command_exits_130(monkeypatch, capsys):
    monkeypatch.setattr(cli.RunCommand, "run", lambda self, args: _interrupted_import())
    assert cli.main(["run"]) == entry.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_other_import_errors_still_raise(monkeypatch):
    def broken(self, args):
        raise ImportError("no module named x")

    monkeypatch.setattr(cli.RunCommand, "run", broken)
    with pytest.raises(ImportError, match="no module named x"):
        cli.main(["run"])


def test_entry_point_turns_an_interrupted_cli_import_into_130(monkeypatch, capsys):
    def interrupted_main(argv):
        _interrupted_import()

    monkeypatch.setattr(cli, "main", interrupted_main)
    try:
        assert entry.main(["run"]) == entry.EXIT_INTERRUPTED
    finally:
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):  # entry.main ignores further interrupts once it has one
            signal.signal(sig, signal.default_int_handler if sig is signal.SIGINT else signal.SIG_DFL)
    assert "interrupted" in capsys.readouterr().err
