"""A one-line progress display: count, rate and ETA, rewritten in place on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """Progress of ``total`` items on ``stream`` (stderr by default).

    On a terminal the line is redrawn at most ``tty_interval`` seconds apart; elsewhere (logs, CI) a full line is
    written at most every ``log_interval`` seconds, and always for the last item.
    """

    def __init__(self, total: int, unit: str = "it", start: int = 0, stream: TextIO | None = None,
                 tty_interval: float = 0.1, log_interval: float = 10.0) -> None:
        self.total, self.unit, self.start = total, unit, start
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = tty_interval if self.tty else log_interval
        self.t0 = time.perf_counter()
        self.last = -float("inf")

    def update(self, done: int, extra: str = "") -> None:
        now = time.perf_counter()
        if now - self.last < self.interval and done != self.total:
            return
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = "?" if eta == float("inf") else (f"{eta / 60:.1f} min" if eta >= 60 else f"{eta:.0f} s")
        text = f"{done}/{self.total} {self.unit}  {rate:.2f} {self.unit}/s  ETA {eta_text}" + (f"  {extra}" if extra else "")
        self.stream.write(f"\r\033[K{text}" if self.tty else text + "\n")
        if self.tty and done == self.total:
            self.stream.write("\n")
        self.stream.flush()
