"""Worker threads for long engine calls. Never imports or touches bpy.

A :class:`Job` runs ``work(reporter)`` in a daemon thread. The work function reports progress and polls for
cancellation through its :class:`Reporter`; everything it says, and its outcome, goes through a queue that the main
thread drains with :meth:`Job.poll`. :func:`run_now` runs the same work function synchronously (background mode).
"""

from __future__ import annotations

import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Cancelled", "Progress", "Done", "Failed", "Stopped", "Outcome", "Reporter", "Job", "run_now", "user_message"]


class Cancelled(Exception):
    """Raised inside a work function (by :meth:`Reporter.check`) when the user cancelled the job."""


@dataclass(frozen=True)
class Progress:
    fraction: float  # in [0, 1]
    text: str


@dataclass(frozen=True)
class Done:
    result: Any


@dataclass(frozen=True)
class Failed:
    message: str  # one line, for the user


@dataclass(frozen=True)
class Stopped:
    """The job was cancelled; its result (if any) is discarded."""


Outcome = Done | Failed | Stopped


def user_message(error: BaseException) -> str:
    """A one-line report for an exception from the engine: expected errors by their message, others with their type
    (and the traceback printed to stderr)."""
    if isinstance(error, ImportError):
        return (f"the engine cannot be imported ({error}); install PyTorch and Pillow with the Install button in "
                "Preferences > Add-ons > SoftRas")
    if isinstance(error, (ValueError, OSError)):  # includes softras.model.WeightsError and FileNotFoundError
        return str(error)
    traceback.print_exception(error)
    return f"{type(error).__name__}: {error}"


class Reporter:
    """The work function's handle: ``progress(fraction, text)``, ``should_stop()`` and ``check()``."""

    def __init__(self, post: Callable[[Progress], None], stop: threading.Event) -> None:
        self._post = post
        self._stop = stop

    def progress(self, fraction: float, text: str) -> None:
        self._post(Progress(min(max(float(fraction), 0.0), 1.0), text))

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._stop.is_set():
            raise Cancelled


def _outcome(work: Callable[[Reporter], Any], reporter: Reporter, stop: threading.Event) -> Outcome:
    try:
        result = work(reporter)
    except Cancelled:
        return Stopped()
    except Exception as error:  # the worker must never die silently
        return Stopped() if stop.is_set() else Failed(user_message(error))
    return Stopped() if stop.is_set() else Done(result)


class Job:
    """``work(reporter)`` in a daemon thread; messages (:class:`Progress`, then one outcome) through a queue."""

    def __init__(self, work: Callable[[Reporter], Any], name: str = "softras-job") -> None:
        self._work = work
        self._queue: queue.Queue[Progress | Done | Failed | Stopped] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        self._queue.put(_outcome(self._work, Reporter(self._queue.put, self._stop), self._stop))

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Ask the work function to stop; its eventual result is discarded."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def poll(self) -> list[Progress | Done | Failed | Stopped]:
        """Every message queued since the last call (non-blocking)."""
        messages = []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def run_now(work: Callable[[Reporter], Any], on_progress: Callable[[Progress], None] | None = None) -> Outcome:
    """Run ``work`` in this thread (no cancellation) and return its outcome."""
    return _outcome(work, Reporter(on_progress or (lambda p: None), threading.Event()), threading.Event())
