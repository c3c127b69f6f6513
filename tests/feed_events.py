"""Reading a commit feed in tests: the control socket's `watch` and the API's SSE stream both
arrive as a queue of events; a test takes exactly the commits it caused, then checks that nothing
more comes."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


def take_commits(
    events: queue.Queue[Event],
    n: int,
    *,
    is_commit: Callable[[Event], bool],
    is_idle: Callable[[Event], bool],
    quiet: float = 1.0,
    within: float = 60.0,
) -> list[Event]:
    """The next `n` commits, with only idle events (heartbeats) between them; then `quiet`
    seconds with nothing but idle events. Anything else (a `missed`, an extra commit) fails."""
    got: list[Event] = []
    deadline = time.monotonic() + within
    while len(got) < n:
        event = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert is_commit(event) or is_idle(event), event
        if is_commit(event):
            got.append(event)
    end = time.monotonic() + quiet
    while time.monotonic() < end:
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        assert is_idle(event), f"an event more than the {n} commits: {event}"
    return got
