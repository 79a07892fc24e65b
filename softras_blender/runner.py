"""Main-thread side of a SoftRas job: progress into the scene's panel state and the status bar, the result into the
scene. Operators build a :class:`Task`; a :class:`Runner` drives its :class:`~.jobs.Job` from a modal timer
(:meth:`Runner.step`), or :func:`run_blocking` runs it at once (background mode, ``EXEC_DEFAULT`` calls).

At most one job runs at a time (:func:`busy`). :func:`request_cancel` (the panel's Cancel button) asks the job to
stop and lets the modal operator end at its next timer tick; :func:`stop_all` (``unregister``) ends everything at
once. Cancelling never changes the scene beyond the panel's status text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import bpy

from .jobs import Done, Failed, Job, Progress, Reporter, Stopped, run_now

__all__ = ["Task", "Runner", "busy", "request_cancel", "stop_all", "run_blocking"]

_active: set["Runner"] = set()


@dataclass(frozen=True)
class Task:
    """One unit of work. ``work`` runs in the worker thread (no bpy!); ``apply(context, result)`` runs on the main
    thread, changes the scene and returns the message to report (or raises ValueError, leaving the scene as it
    was); ``scene_name`` is the scene whose panel shows the progress."""

    label: str
    work: Callable[[Reporter], Any]
    apply: Callable[[bpy.types.Context, Any], str]
    scene_name: str


def busy() -> bool:
    """Whether a job is running."""
    return bool(_active)


def request_cancel() -> None:
    """Ask every running job to stop; each runner ends at its operator's next timer tick."""
    for runner in _active:
        runner.job.cancel()


def stop_all() -> None:
    """Cancel every running job now and release its timer, status bar text and panel state."""
    for runner in list(_active):
        runner.cancel(bpy.context)


def _set_state(scene_name: str, running: bool, progress: float, status: str) -> None:
    scene = bpy.data.scenes.get(scene_name)
    props = getattr(scene, "softras", None)
    if props is not None:
        props.running, props.progress, props.status = running, progress, status


def _redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _status_bar(context: bpy.types.Context, text: str | None) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)


def _apply(task: Task, context: bpy.types.Context, outcome: Done | Failed | Stopped) -> tuple[str, str]:
    """('FINISHED', message) after applying a result, ('CANCELLED', error message or '') otherwise."""
    if isinstance(outcome, Done):
        try:
            return "FINISHED", task.apply(context, outcome.result)
        except ValueError as error:
            return "CANCELLED", str(error)
    return "CANCELLED", outcome.message if isinstance(outcome, Failed) else ""


def run_blocking(task: Task, context: bpy.types.Context) -> tuple[str, str]:
    """Run ``task`` in this thread and apply its result: ('FINISHED', message) or ('CANCELLED', error)."""
    _set_state(task.scene_name, True, 0.0, f"{task.label}...")
    state, message = _apply(task, context, run_now(task.work))
    _set_state(task.scene_name, False, 1.0 if state == "FINISHED" else 0.0, message or "Cancelled")
    return state, message


class Runner:
    """Drives one task's job from a modal operator. ``timer`` (from ``event_timer_add``) is removed when the runner
    ends, whichever way."""

    def __init__(self, task: Task, timer: bpy.types.Timer | None = None) -> None:
        self.task = task
        self.job = Job(task.work, name=f"softras-{task.label.lower().replace(' ', '-')}")
        self.timer = timer

    def start(self, context: bpy.types.Context) -> None:
        _active.add(self)
        _set_state(self.task.scene_name, True, 0.0, f"{self.task.label}: starting")
        _status_bar(context, f"SoftRas {self.task.label}: starting (Esc to cancel)")
        self.job.start()

    def step(self, context: bpy.types.Context) -> tuple[str, str]:
        """Consume the job's messages: ('RUNNING_MODAL', '') while it runs, then ('FINISHED', message) once the
        result is in the scene, or ('CANCELLED', error message or '' when cancelled)."""
        if self.job.cancelled:
            self.cancel(context)
            return "CANCELLED", ""
        for message in self.job.poll():
            if isinstance(message, Progress):
                _set_state(self.task.scene_name, True, message.fraction, message.text)
                _status_bar(context, f"SoftRas {self.task.label}: {message.text} ({message.fraction:.0%}, Esc to cancel)")
                _redraw(context)
                continue
            state, text = _apply(self.task, context, message)
            self._end(context, 1.0 if state == "FINISHED" else 0.0, text or "Cancelled")
            return state, text
        return "RUNNING_MODAL", ""

    def cancel(self, context: bpy.types.Context) -> None:
        """Stop the job and discard its result; the scene is not changed."""
        self.job.cancel()
        self._end(context, 0.0, "Cancelled")

    def _end(self, context: bpy.types.Context, progress: float, status: str) -> None:
        _active.discard(self)
        if self.timer is not None:
            context.window_manager.event_timer_remove(self.timer)
            self.timer = None
        _set_state(self.task.scene_name, False, progress, status)
        _status_bar(context, None)
        _redraw(context)
