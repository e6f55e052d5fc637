"""Report jobs: long reports computed on a small thread pool while the browser polls.

A station-day is about seven million fixes and takes seconds to recompute, longer than an HTTP
request should hang; a city-month is much more. So the web starts a job, answers 202 at once,
and the page polls for progress. Two jobs at most run at a time (each is CPU- and disk-heavy,
and ingest must keep up); the rest wait in the pool's queue. Each person may have only a few
jobs waiting or running, so one impatient double-clicker cannot fill the queue for everyone.

A job is visible only to whoever started it (``owner``: the signed-in principal) and its id is
random, so ids neither leak nor can be guessed. Finished jobs are forgotten ``keep_s`` (an hour)
after they finish; unfinished ones are never dropped while they run.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from .contracts import Progress

log = logging.getLogger("yijing.reports")

Status = Literal["running", "done", "failed"]
MAX_WORKERS = 2
KEEP_S = 3600.0
MAX_PER_OWNER = 4


class JobsBusy(Exception):
    """The owner already has ``MAX_PER_OWNER`` jobs waiting or running."""


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as its owner sees it at one moment. ``result`` is set when ``status`` is done,
    ``error`` (a sentence for the person) when it failed."""

    job_id: str
    status: Status
    done: int
    total: int
    error: str | None = None
    result: Any = None


@dataclass(slots=True)
class _Job:
    view: JobView
    owner: Hashable
    finished_at: float | None = None


class ReportJobs:
    def __init__(
        self,
        *,
        workers: int = MAX_WORKERS,
        keep_s: float = KEEP_S,
        max_per_owner: int = MAX_PER_OWNER,
        clock: Callable[[], float] = time.monotonic,
        explain: Callable[[BaseException], str | None] | None = None,
    ) -> None:
        """``explain(exc)`` turns an expected failure into the sentence the owner sees; any
        other exception is logged with its traceback and shown as an internal error."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="report")
        self._keep_s = keep_s
        self._max_per_owner = max_per_owner
        self._clock = clock
        self._explain = explain or (lambda exc: None)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._closed = False

    def submit(self, owner: Hashable, work: Callable[[Progress], Any]) -> JobView:
        """Queue ``work(progress)``; its return value becomes the job's ``result``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("report jobs are shut down")
            self._forget_old()
            active = sum(
                1 for j in self._jobs.values() if j.owner == owner and j.finished_at is None
            )
            if active >= self._max_per_owner:
                raise JobsBusy(f"you already have {active} reports running; wait for one to finish")
            job_id = secrets.token_urlsafe(12)
            view = JobView(job_id, "running", 0, 0)
            self._jobs[job_id] = _Job(view, owner)
        self._pool.submit(self._run, job_id, work)
        return view

    def get(self, job_id: str, owner: Hashable) -> JobView | None:
        """The job, if it exists and ``owner`` started it (otherwise None: not found)."""
        with self._lock:
            self._forget_old()
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner:
                return None
            return job.view

    def close(self) -> None:
        """Cancel queued jobs and stop taking new ones; a running job finishes in its thread."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- worker side ---------------------------------------------------------------------------

    def _run(self, job_id: str, work: Callable[[Progress], Any]) -> None:
        def progress(done: int, total: int) -> None:
            self._update(job_id, done=done, total=total)

        try:
            result = work(progress)
        except Exception as exc:
            reason = self._explain(exc)
            if reason is None:
                log.exception("report job %s failed", job_id)
                reason = f"internal error ({type(exc).__name__}); the server log has the details"
            self._update(job_id, status="failed", error=reason, finished=True)
        else:
            self._update(job_id, status="done", result=result, finished=True)

    def _update(self, job_id: str, *, finished: bool = False, **changes: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            view = replace(job.view, **changes)
            if finished and view.status == "done":
                view = replace(view, done=max(view.done, view.total))
            job.view = view
            if finished:
                job.finished_at = self._clock()

    def _forget_old(self) -> None:
        now = self._clock()
        stale = [
            job_id
            for job_id, job in self._jobs.items()
            if job.finished_at is not None and now - job.finished_at >= self._keep_s
        ]
        for job_id in stale:
            del self._jobs[job_id]
