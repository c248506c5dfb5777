"""Stopping cleanly: Ctrl-C (SIGINT) and SIGTERM end a run with a checkpoint, never silently.

Python turns SIGINT into :class:`KeyboardInterrupt` but lets SIGTERM (what ``kill``, schedulers
and a closing terminal send) end the process at once, without a word and without the work since
the last checkpoint. :func:`install_handlers` (called by the ``iron`` command) makes both raise
:class:`Interrupted`, which the command turns into a one-line message and exit status
``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM), as shells do.

Inside a training loop a signal must not land half-way through a step (some optimisers stepped,
others not): :class:`StopRequests` defers it to the end of the step, where the loop saves a
checkpoint of a consistent state and stops. A second signal while one is pending stops at once
(the user insists); the last saved checkpoint is then what remains, intact (writes are atomic).
"""

from __future__ import annotations

import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``exit_status`` is what a shell reports for it."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _raise(signum, _frame) -> None:
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install_handlers() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` (from now on, in this process)."""
    if _in_main_thread():
        for signum in HANDLED:
            signal.signal(signum, _raise)


class StopRequests:
    """Within ``with StopRequests() as stop:``, a signal sets ``stop.requested`` instead of
    raising; the loop checks it after each step, saves, then calls :meth:`stop_now`."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _record(self, signum, _frame) -> None:
        if self.requested is not None:
            raise Interrupted(signum)  # a second signal: stop now
        self.requested = int(signum)

    def __enter__(self) -> StopRequests:
        if _in_main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def stop_now(self) -> None:
        """Raise the deferred :class:`Interrupted` (call after saving)."""
        if self.requested is not None:
            raise Interrupted(self.requested)
