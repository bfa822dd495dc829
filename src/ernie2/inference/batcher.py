"""Dynamic batching: requests from concurrent clients queue up and one worker thread runs them
through the model together, up to a maximum batch size and after at most a maximum wait."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# (kind, features) -> one result per feature, in order
RunFn = Callable[[str, Sequence[dict]], list]


class Overloaded(RuntimeError):
    """More work is queued than the batcher accepts; the client should retry later."""


@dataclass
class _Job:
    kind: str
    features: Sequence[dict]
    future: Future = field(default_factory=Future)


class Batcher:
    """`future = batcher.submit(kind, features)`; the future's result is `run(kind, features)`
    computed together with other jobs of the same kind that arrived within `max_wait` seconds of
    the first, up to `max_batch` features (one job is never split between model calls here;
    `run` splits what it is given into batches of its own)."""

    def __init__(self, run: RunFn, max_batch: int = 32, max_wait: float = 0.005,
                 max_queued: int = 4096, name: str = "ernie2-batcher"):
        if max_batch < 1 or max_wait < 0 or max_queued < 1:
            raise ValueError("max_batch and max_queued must be positive, max_wait not negative")
        self.run, self.max_batch, self.max_wait, self.max_queued = run, max_batch, max_wait, max_queued
        self.name = name
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queued = 0  # features submitted and not finished
        self.stats: Counter = Counter()  # calls, jobs, features, largest batch

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Batcher:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ submitting
    def submit(self, kind: str, features: Sequence[dict]) -> Future:
        if not self.running:
            raise RuntimeError("the batcher is not running (call start())")
        n = len(features)
        with self._lock:
            if self._queued and self._queued + n > self.max_queued:
                raise Overloaded(f"{self._queued} texts are waiting; the limit is "
                                 f"{self.max_queued}")
            self._queued += n
        job = _Job(kind, features)
        job.future.add_done_callback(lambda _f: self._release(n))
        self._queue.put(job)
        return job.future

    def _release(self, n: int) -> None:
        with self._lock:
            self._queued -= n

    # ------------------------------------------------------------------ the worker
    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and the jobs that arrive within max_wait, up to max_batch features."""
        jobs, n = [first], len(first.features)
        deadline = time.monotonic() + self.max_wait
        while n < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else \
                    self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n += len(job.features)
        return jobs, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            jobs, stopping = self._collect(first)
            by_kind: dict[str, list[_Job]] = {}
            for job in jobs:
                if job.future.set_running_or_notify_cancel():  # skip jobs given up on
                    by_kind.setdefault(job.kind, []).append(job)
            for kind, group in by_kind.items():
                self._run_group(kind, group)
        # Nothing may wait forever on a stopped batcher.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))

    def _run_group(self, kind: str, group: list[_Job]) -> None:
        features = [f for job in group for f in job.features]
        try:
            results = self.run(kind, features)
            if len(results) != len(features):
                raise RuntimeError(f"{kind}: {len(results)} results for {len(features)} inputs")
        except BaseException as exc:  # the worker must survive any one batch
            logger.exception("batch of %d %s inputs failed", len(features), kind)
            for job in group:
                job.future.set_exception(exc)
            return
        self.stats.update(calls=1, jobs=len(group), features=len(features))
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(features))
        self.stats["most_jobs_in_a_batch"] = max(self.stats["most_jobs_in_a_batch"], len(group))
        start = 0
        for job in group:
            job.future.set_result(results[start:start + len(job.features)])
            start += len(job.features)


__all__ = ["Batcher", "Overloaded"]
