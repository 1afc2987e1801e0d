"""Which engine runs are going in this app, so that a timed panel can say when another run shared the machine.

The app serves several runs at once (its concurrency limit, over every panel and user), and on a small host two
runs halve each other's speed: a Race timed beside a Sweep read half its speed alone and said nothing. Every
panel's engine is a `TrackedEngine`; the Race and the Sweep take one of their own (a fresh owner) and compare
the runs of everyone else before and after each timing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Others:
    """Runs of owners other than one: how many ever started, how many are going."""

    started: int
    active: int


class RunTracker:
    def __init__(self):
        self._lock = threading.Lock()
        self._started: dict[object, int] = {}  # owner -> runs started
        self._active: dict[object, int] = {}  # owner -> runs going

    def others(self, owner) -> Others:
        with self._lock:
            return Others(sum(n for o, n in self._started.items() if o is not owner),
                          sum(n for o, n in self._active.items() if o is not owner))

    def disturbed(self, owner, before: Others) -> bool:
        """Whether another owner's run was going at `before`, started since, or is going now."""
        now = self.others(owner)
        return before.active > 0 or now.started > before.started or now.active > 0

    def track(self, events, owner):
        """`events` (a sampler's iterator), counted as one run of `owner` from its first step to its end or close."""
        with self._lock:
            self._started[owner] = self._started.get(owner, 0) + 1
            self._active[owner] = self._active.get(owner, 0) + 1
        try:
            yield from events
        finally:  # also when the consumer stops early (Stop, a superseded run): Python closes the generator
            with self._lock:
                self._active[owner] -= 1


class TrackedEngine:
    """An engine whose runs (`stream`) count in a RunTracker under `owner`; everything else is the engine's."""

    def __init__(self, engine, tracker: RunTracker, owner=None):
        self._engine, self.tracker, self.owner = engine, tracker, owner

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def stream(self, *args, **kwargs):
        events = self._engine.stream(*args, **kwargs)  # its checks raise here, before anything counts
        return self.tracker.track(events, self.owner)

    def own(self) -> "TrackedEngine":
        """The same engine under a fresh owner: a timed run's own runs do not count as disturbing it."""
        return TrackedEngine(self._engine, self.tracker, object())
