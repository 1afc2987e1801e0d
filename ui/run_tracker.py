"""Which engine runs are going in this app, so that a timed panel can say when another run shared the machine.

The app serves several runs at once (its concurrency limit, over every panel and user), and on a small host two
runs halve each other's speed: a Race timed beside a Sweep read half its speed alone and said nothing. Every
panel's engine is a `TrackedEngine`; the Race and the Sweep take one of their own (its own tally) and compare
the runs of everyone else before and after each timing.

It also carries a panel's Stop into the runs themselves (`StopRequests`). Gradio's cancel lands only when the
panel's generator next yields, and the Race and the Sweep yield between whole timed runs (seconds apart); until
then the front end holds the stopped run as pending, and a Race pressed in that window was lost (the front end
defers it to the stopped run's end, whose message does not always come). A run that watches its panel's Stop
ends at its next decoding step instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Others:
    """Runs of engines other than one: how many ever started, how many are going."""

    started: int
    active: int


class RunTracker:
    """The app's runs in total; each TrackedEngine counts its own, so everyone else's is the difference (a
    Race or Sweep leaves no entry behind when it ends)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = 0  # runs ever started, every engine's
        self.active = 0  # runs going now


class Stopped(Exception):
    """Raised out of a watching run's next decoding step once its panel's Stop was pressed."""


class StopRequests:
    """How many times each browser session pressed each panel's Stop. A run notes the count when it starts and
    is stopped once the count moves, so a Stop pressed before a run started never stops that run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str], int] = {}  # (session, panel) -> Stops pressed; an int per pair

    def request(self, session: str | None, panel: str) -> None:
        if session is not None:
            with self._lock:
                self._count[session, panel] = self._count.get((session, panel), 0) + 1

    def watch(self, session: str | None, panel: str) -> Callable[[], bool]:
        """A test that turns true once `panel`'s Stop is pressed in `session` after this call (a run with no
        session, as the Python API's, is never stopped this way)."""
        if session is None:
            return lambda: False
        key = (session, panel)
        with self._lock:
            start = self._count.get(key, 0)
        return lambda: self._count.get(key, 0) != start

    def supersede(self, session: str | None, panel: str) -> Callable[[], bool]:
        """A new run of `panel`: the session's earlier one stops at its next step, and the new one watches.
        The front end can start a second Race while a stopped one is still pending (a deferred click), and two
        timed runs at once would disturb each other: the newest is the one the user asked for."""
        self.request(session, panel)
        return self.watch(session, panel)


class TrackedEngine:
    """An engine whose runs (`stream`) count in a RunTracker and in its own tally; everything else is the engine's."""

    def __init__(self, engine, tracker: RunTracker, stopped: Callable[[], bool] | None = None):
        self._engine, self.tracker, self.stopped = engine, tracker, stopped
        self.started = self.active = 0  # this engine's own runs

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def stream(self, *args, **kwargs):
        events = self._engine.stream(*args, **kwargs)  # its checks raise here, before anything counts
        return self._track(events)

    def own(self, stopped: Callable[[], bool] | None = None) -> "TrackedEngine":
        """The same engine with a tally of its own: a timed run's own runs do not count as disturbing it.
        stopped: a StopRequests.watch test; once it is true, the engine's runs raise Stopped at their next step."""
        return TrackedEngine(self._engine, self.tracker, stopped)

    def others(self) -> Others:
        """Every other engine's runs: the tracker's totals less this one's."""
        with self.tracker.lock:
            return Others(self.tracker.started - self.started, self.tracker.active - self.active)

    def disturbed(self, before: Others) -> bool:
        """Whether another engine's run was going at `before` (an `others()`), started since, or is going now."""
        now = self.others()
        return before.active > 0 or now.started > before.started or now.active > 0

    def _track(self, events):
        """`events` (a sampler's iterator), counted as one run from its first step to its end or close."""
        tracker = self.tracker
        with tracker.lock:
            tracker.started, tracker.active = tracker.started + 1, tracker.active + 1
            self.started, self.active = self.started + 1, self.active + 1
        try:
            for event in events:
                if self.stopped is not None and self.stopped():
                    raise Stopped
                yield event
        finally:  # also when the consumer stops early (Stop, a superseded run): Python closes the generator
            events.close()  # a sampler left at a step by Stopped ends now, not when it is collected
            with tracker.lock:
                tracker.active, self.active = tracker.active - 1, self.active - 1
