"""A bounded queue of generator renders, worked off by one thread of its own, so renders never hold the
server's page threads: a render request waits for its result on one of `capacity` render slots, and when all
slots are taken it is answered at once with 503 "busy" (the page threads stay free for pages)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from werkzeug.exceptions import ServiceUnavailable

DEFAULT_CAPACITY = (
    8  # renders queued or running at once; the server gets this many threads beyond its page threads
)
WAIT_S = 300  # longest a request waits for its render (a 1024 px generator on a CPU is slow)


class Busy(ServiceUnavailable):
    """Every render slot is taken: the client should retry in a moment."""

    def __init__(self, capacity: int):
        super().__init__(
            f"the renderer is busy ({capacity} renders queued or running); "
            "try again in a moment (pages answer meanwhile)"
        )
        self.retry_after = 2


class RenderQueue:
    """Run callables one at a time on a worker thread; at most `capacity` are queued or running."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.lock = threading.Lock()
        self.in_use = 0  # slots taken: renders queued or running
        self.jobs: queue.Queue = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="ganmatch-render", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        while True:
            fn, future = self.jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                    future.set_exception(exc)

    def submit(self, fn: Callable) -> Future:
        """Queue `fn`; raises Busy (HTTP 503) at once when every slot is taken (a slot frees when it ends)."""
        with self.lock:
            if self.in_use >= self.capacity:
                raise Busy(self.capacity)
            self.in_use += 1
        future: Future = Future()
        future.add_done_callback(lambda _: self._release())
        self.jobs.put((fn, future))
        return future

    def _release(self) -> None:
        with self.lock:
            self.in_use -= 1

    def call(self, fn: Callable):
        """`fn()` run on the render thread; its result (or its exception)."""
        return self.submit(fn).result(timeout=WAIT_S)
