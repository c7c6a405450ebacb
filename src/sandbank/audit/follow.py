"""A log another process is still writing, read as it grows (issue 18: verify and replay on
the second core, beside the running economy).

`Following` gives `entries()` and `checkpoints()` as `replay_log` reads them, but where a
store's iterators end at what is committed now, these wait for more until the writer says it
has finished (`finished()` true), then read once more and end. A tick's entries and its
checkpoint are committed in one transaction, so a reader never sees half a tick. Each read
is a bounded batch, fully fetched before it is handed on: no read transaction stays open
while the replay works (a long one would keep SQLite's write-ahead log from being reset).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

BATCH = 4096


class Following:
    def __init__(self, store: Any, finished: Callable[[], bool], poll: float = 0.01) -> None:
        self.store = store
        self.finished = finished
        self.poll = poll

    def _follow(self, read: Callable[[], list[Any]]) -> Iterator[Any]:
        final = False
        while True:
            batch = read()
            if batch:
                yield from batch
                continue
            if final:
                return
            final = self.finished()  # (true: one more read sees all the writer wrote)
            if not final:
                time.sleep(self.poll)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Any]:
        pos = start

        def read() -> list[Any]:
            nonlocal pos
            stop = pos + BATCH if end is None else min(end, pos + BATCH)
            batch = list(self.store.entries(pos, stop)) if stop > pos else []
            if batch:
                pos = batch[-1].seq + 1
            return batch

        return self._follow(read)

    def checkpoints(self, after: int = -1) -> Iterator[Any]:
        last = after

        def read() -> list[Any]:
            nonlocal last
            found = self.store.checkpoints(last)
            batch = list(islice(found, BATCH))
            found.close()  # (its cursor, now)
            if batch:
                last = batch[-1].tick
            return batch

        return self._follow(read)
