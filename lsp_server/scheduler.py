"""One inference worker thread, off the event loop, with per-document supersession.

pygls cannot stop a running thread, so cancellation is cooperative: every job gets a flag (runtime.cancel.Interrupt,
a threading.Event) that the runtime checks after every token. A newer request for the same document sets the running
job's flag and replaces that document's waiting job (at most one waits per document), so a typing storm leaves no
backlog: the worker only ever sees the latest request of each document.

Background jobs (prefill of a file just opened, or of the full window after a cold answer) run only when nothing
else waits, and any foreground submit stops the one running inside the prefill chunk in flight (the flag interrupts
the ONNX Runtime call): they use idle time, never a user's.
Among them the newest goes first: it is for the file the user is in now. (Oldest first, the ten tabs an editor
restores at start each prefilled ~1 s before the file just opened, whose first suggestion then found nothing cached.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any, Callable

from runtime.cancel import Interrupt

log = logging.getLogger("waferline.scheduler")


class Job:
    """A unit of work; its future resolves to fn's result, or None when superseded before it ran."""

    def __init__(self, key: str, fn: Callable[[threading.Event], Any], supersede: bool = True, background: bool = False,
                 doc: str = "", last: bool = False):
        self.key = key
        self.doc = doc  # the document the job is for
        self.last = last  # background work that waits for all other background work (a prefill aside)
        self.fn = fn
        self.supersede = supersede
        self.background = background
        self.cancel = Interrupt()
        self.future: Future = Future()


class InferenceScheduler:
    def __init__(self, name: str = "waferline-inference"):
        self._cv = threading.Condition()
        self._waiting: OrderedDict[str, Job] = OrderedDict()
        self._running: Job | None = None
        self._closed = False
        self.superseded = 0  # jobs dropped or stopped because a newer one arrived
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: str, fn: Callable[[threading.Event], Any], supersede: bool = True,
               background: bool = False, doc: str | None = None, last: bool = False) -> Job:
        """Queue fn(cancel_event) for `key` (of document `doc`, `key` if not given); a supersedable job
        replaces/cancels older ones of the same key. Any other job also stops a running background job: a request
        always, and newer idle work for another document (where the user is now) too; idle work for the same document
        waits its turn instead. `last` background work (a prefill aside, which only makes a good prompt better) runs
        when no other background work waits, and any other stops it: chosen newest first with the rest, the aside of
        a file just opened starved its own window (bench/lsp_typing.py, 10 tabs: the first full-window answer at key
        111 of a run, from the short cold window until then; keys 40 and 68 in two rounds with the aside last).
        A stopped background job is not re-run."""
        job = Job(f"background:{key}" if background else key, fn, supersede, background, doc if doc is not None else key,
                  last and background)
        key = job.key
        with self._cv:
            if self._closed:
                job.future.set_result(None)
                return job
            running = self._running
            if (running is not None and running.background and running.key != key
                    and (not background or running.doc != job.doc or (running.last and not job.last))):
                running.cancel.set()  # a request, or idle work for another document (the user moved on), goes first
            if supersede:
                running = self._running
                if running is not None and running.key == key and running.supersede:
                    running.cancel.set()
                    self.superseded += 1
                old = self._waiting.pop(key, None)
                if old is not None:
                    old.cancel.set()
                    self.superseded += 1
                    if not old.future.done():
                        old.future.set_result(None)
            else:
                key = f"{key}#{id(job)}"  # control jobs (model load) queue in order, never replaced
            self._waiting[key] = job
            self._cv.notify()
        return job

    def pending(self, background: bool = False) -> int:
        """Jobs waiting or running, foreground ones by default: background prefill is idle time, not a backlog."""
        with self._cv:
            jobs = [*self._waiting.values(), *([self._running] if self._running is not None else [])]
            return sum(j.background == background for j in jobs)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if self._closed:
                    for job in self._waiting.values():
                        if not job.future.done():
                            job.future.set_result(None)
                    self._waiting.clear()
                    return
                key = next((k for k, j in self._waiting.items() if not j.background), None)
                if key is None:  # the newest idle work first, `last` work after all other
                    key = next((k for k, j in reversed(self._waiting.items()) if not j.last), None)
                key = key if key is not None else next(reversed(self._waiting))
                job = self._waiting.pop(key)
                self._running = job
            result, error = None, None
            if not (job.future.done() or job.cancel.is_set()):
                t0 = time.perf_counter()
                try:
                    result = job.fn(job.cancel)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                    log.exception("inference job %s failed", job.key)
                    error = exc
                t1, asked = time.perf_counter(), job.cancel.set_at
                stopped = "" if asked is None else f", stopped {(t1 - max(asked, t0)) * 1e3:.0f} ms after asked"
                log.debug("job %s: %.0f ms%s", job.key, (t1 - t0) * 1e3, stopped)
            with self._cv:
                self._running = None  # before the answer goes out: a status request after it sees no backlog
            if not job.future.done():
                if error is not None:
                    job.future.set_exception(error)
                else:
                    job.future.set_result(result)

    def close(self, timeout_s: float = 2.0) -> None:
        with self._cv:
            self._closed = True
            if self._running is not None:
                self._running.cancel.set()
            self._cv.notify_all()
        self._thread.join(timeout_s)
