"""Reading a commit feed in tests: the control socket's `watch` and the API's SSE stream both
arrive as a queue of events; a test takes exactly the commits it caused, then checks that nothing
more comes."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class Shape:
    """How a feed's events say what they are: the key, and its value for a commit and for a
    heartbeat."""

    key: str
    commit: str
    idle: str


WATCH = Shape("type", "commit", "heartbeat")  # the control socket's JSON lines
SSE = Shape("event", "commit", "comment")  # the API's server-sent events, as tests parse them


def take_commits(
    events: queue.Queue[Event], n: int, shape: Shape, quiet: float = 1.0, within: float = 60.0
) -> list[Event]:
    """The next `n` commits, with only heartbeats between them; then `quiet` seconds with nothing
    but heartbeats. Anything else (a `missed`, an extra commit) fails."""
    got: list[Event] = []
    deadline = time.monotonic() + within
    while len(got) < n:
        event = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert event[shape.key] in (shape.commit, shape.idle), event
        if event[shape.key] == shape.commit:
            got.append(event)
    end = time.monotonic() + quiet
    while time.monotonic() < end:
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        assert event[shape.key] == shape.idle, f"an event more than the {n} commits: {event}"
    return got
