"""Which engine runs are going in this app, so that a timed panel can say when another run shared the machine.

The app serves several runs at once (its concurrency limit, over every panel and user), and on a small host two
runs halve each other's speed: a Race timed beside a Sweep read half its speed alone and said nothing. Every
panel's engine is a `TrackedEngine`; the Race, the Sweep and the audit take one of their own (its own tally),
and the Race and the Sweep compare the runs of everyone else before and after each timing.

It also carries a panel's Stop into the runs themselves (`StopRequests`), in place of Gradio's cancel for the
Race, the audit and the Sweep, and beside it for the Playground (whose run yields every step, but a cancel missed
a run pressed a moment before). A cancel lands only when the panel's generator next yields (the Race and the
Sweep yield between whole timed runs, seconds apart); until then the front end holds the stopped run as
pending and defers a new click to its end, and a cancelled run's end did not always reach the front end: the
new Race was lost (0 of 6 tries through Chromium). Gradio also cancels by session and listener, so a cancel
arriving late could end the new run instead. A run that watches its panel's Stop ends at its next decoding step
and completes as a finished event.
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
    """The run going in each browser session's panel (Playground, Race, audit, Sweep), so that the panel's Stop,
    or a newer run of it, can stop that run; and the panels whose Stop found no run going (a run waiting in
    Gradio's queue starts stopped). Entries live as long as their run, or until the panel's button is pressed again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._live: dict[tuple[str, str], RunWatch] = {}  # (session, panel) -> the watch of the run going
        self._stop_next: set[tuple[str, str]] = set()  # Stop pressed with no run going (one may be queued)

    def pressed(self, session: str | None, panel: str, stop_going: bool = False) -> None:
        """The panel's button was pressed: a Stop pressed before it does not stop the run it asks for. The app
        registers this queue-free listener before the run's, and the front end awaits it before queueing the run.
        stop_going: the session's run going stops at its next step now, not when the new one begins (the
        Playground's Generate and slider releases: the old run frees its place in the queue for the new one)."""
        if session is not None:
            with self._lock:
                self._stop_next.discard((session, panel))
                if stop_going:
                    self._live.pop((session, panel), None)

    def forget(self, session: str | None) -> None:
        """The session's page has closed: its runs going stop at their next step, and its Stops pressed with no run
        going are dropped (a server kept one entry per closed page for good)."""
        with self._lock:
            for key in [k for k in self._live if k[0] == session]:
                del self._live[key]
            self._stop_next = {k for k in self._stop_next if k[0] != session}

    def going(self, session: str | None, panel: str) -> bool:
        """Whether the session has a run of `panel` going."""
        return session is not None and (session, panel) in self._live

    def begin(self, session: str | None, panel: str) -> "RunWatch":
        """A new run of `panel`: the session's earlier one (if any) stops at its next step, as two timed runs at
        once would disturb each other (two API calls from one gradio_client Client are one session). A run whose
        Stop came while it waited in the queue raises Stopped here, before it does anything. A run with no
        session (the Python API's) is never stopped this way. Call the watch's `end()` when the run ends."""
        watch = RunWatch(self, None if session is None else (session, panel))
        if watch.key is not None:
            with self._lock:
                if watch.key in self._stop_next:  # stopped while queued: it never goes live
                    self._stop_next.discard(watch.key)
                    raise Stopped
                self._live[watch.key] = watch
        return watch

    def request(self, session: str | None, panel: str, wait_s: float = 0.0) -> bool:
        """The panel's Stop: the session's run of it stops at its next step; with none going, the next run to
        begin before the button is pressed again (a queued one) begins stopped. wait_s: wait up to this long
        for the stopped run to end. Returns whether a run was going and has ended."""
        if session is None:
            return False
        with self._lock:
            watch = self._live.pop((session, panel), None)
            if watch is None:
                self._stop_next.add((session, panel))
        return watch is not None and watch.ended.wait(wait_s)


class RunWatch:
    """One run's test for "stopped" (called at every decoding step: a dict lookup, no lock) and its `end()`."""

    def __init__(self, requests: StopRequests, key: tuple[str, str] | None):
        self.requests, self.key = requests, key
        self.ended = threading.Event()

    def __call__(self) -> bool:
        return self.key is not None and self.requests._live.get(self.key) is not self

    def end(self) -> None:
        self.ended.set()
        if self.key is not None:
            with self.requests._lock:
                if self.requests._live.get(self.key) is self:
                    del self.requests._live[self.key]


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
        stopped: a StopRequests.begin watch; once it is true, the engine's runs raise Stopped at their next step."""
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
            try:  # a sampler left at a step by Stopped ends now, not when it is collected
                getattr(events, "close", lambda: None)()
            finally:
                with tracker.lock:
                    tracker.active, self.active = tracker.active - 1, self.active - 1
