"""Which engine runs are going in this app, so that a timed panel can say when another run shared the machine.

The app serves several runs at once (its concurrency limit, over every panel and user), and on a small host two
runs halve each other's speed: a Race timed beside a Sweep read half its speed alone and said nothing. Every
panel's engine is a `TrackedEngine`; the Race and the Sweep take one of their own (its own tally) and compare
the runs of everyone else before and after each timing.
"""

from __future__ import annotations

import threading
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


class TrackedEngine:
    """An engine whose runs (`stream`) count in a RunTracker and in its own tally; everything else is the engine's."""

    def __init__(self, engine, tracker: RunTracker):
        self._engine, self.tracker = engine, tracker
        self.started = self.active = 0  # this engine's own runs

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def stream(self, *args, **kwargs):
        events = self._engine.stream(*args, **kwargs)  # its checks raise here, before anything counts
        return self._track(events)

    def own(self) -> "TrackedEngine":
        """The same engine with a tally of its own: a timed run's own runs do not count as disturbing it."""
        return TrackedEngine(self._engine, self.tracker)

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
            yield from events
        finally:  # also when the consumer stops early (Stop, a superseded run): Python closes the generator
            with tracker.lock:
                tracker.active, self.active = tracker.active - 1, self.active - 1
