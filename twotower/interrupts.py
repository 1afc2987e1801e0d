"""Signals a run ends on: SIGTERM taken as Ctrl-C is (`Terminated`), and training's stop at the end of a step.

Standard library only: the CLI imports this before torch (a command's --help must not wait for it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, kill, docker stop, a job scheduler), raised where the run is, as Ctrl-C's KeyboardInterrupt
    is: every handler of one sees both, and what Ctrl-C keeps (a partial trace, a sweep's points) it keeps."""


def raise_terminated(signum, frame):
    raise Terminated


def take_over(sig: int, handler):
    """signal.signal(sig, handler) where a run may take the signal: in the main thread, and not where it is ignored
    (`trap '' TERM`, `nohup`, a background job's SIGINT) or handled outside Python (getsignal's None). Returns the
    handler to put back, or None where nothing was changed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(sig)
    if previous in (None, signal.SIG_IGN):
        return None
    signal.signal(sig, handler)
    return previous


@contextlib.contextmanager
def signals_held():
    """SIGINT and SIGTERM held off while a run writes what it keeps, then raised as they would have been (the
    Ctrl-C of a pipeline reaches the writer just after its reader's end: the write of the trace that the closed pipe
    had set off was cut short by it, and the trace lost)."""
    came = []
    previous = {sig: take_over(sig, lambda signum, frame: came.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    if came:
        raise Terminated if came[0] == signal.SIGTERM else KeyboardInterrupt


def quiet_stdout() -> None:
    """Standard output to /dev/null: its reader has gone (`| head`), and later writes, the exit's flush included,
    would each raise BrokenPipeError."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class StdoutFailed(BrokenPipeError):
    """Standard output failed otherwise than by its reader leaving: a full disk under `> file`, a terminal gone
    (EIO). Taken as a closed pipe is (the run's files are still written, later prints go nowhere: the report was
    lost with a traceback, and a bench's --out with it), then said as an error (the CLI's exit 1)."""


def stdout_error(exc: OSError) -> BrokenPipeError:
    """What a failed write to stdout ends the command with, once its files are written; stdout is then quiet."""
    quiet_stdout()
    if isinstance(exc, BrokenPipeError):
        return exc
    return StdoutFailed(exc.errno, f"standard output could not be written ({exc.strerror or exc})")


class StopAtStepEnd:
    """Ctrl-C or SIGTERM while training: the step going ends, is validated and saved, and the stage stops (the run
    kept only its last checkpoint, up to save_every - 1 steps back: minutes of a GPU lease). A second signal
    stops at once. Handlers are set in the main thread only (elsewhere nothing changes), not for a signal that is
    ignored, and put back on exit."""

    def __init__(self, what: str):
        self.what, self.requested, self._previous = what, None, {}
        self._holding, self._second = False, None  # a save going, and a second signal that came during it

    def __enter__(self) -> "StopAtStepEnd":
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = take_over(sig, self._handle)
            if previous is not None:
                self._previous[sig] = previous
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:  # the second: at once, or once the save going is whole
            if self._holding:
                self._second = signum
                return
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.what}: {self.requested}: stopping after this step, which is saved (again: stop at once)",
              file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def holding(self):
        """A checkpoint save: a second signal during it takes effect once it is written (one that cut it half way
        left a half-removed folder that made every later save fail)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._second is not None:
            raise Terminated if self._second == signal.SIGTERM else KeyboardInterrupt

    def stop(self) -> None:
        """After the save: end the run as the signal would have (the CLI's exit 130, or 143 for SIGTERM)."""
        raise Terminated if self.requested == "SIGTERM" else KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
