"""What the command line prints: colour only on a terminal, progress bars, errors with a fix.

Colour follows the usual conventions: on when the stream is a terminal, off when it is not
(pipes, files, CI logs), off whenever `NO_COLOR` is set, on when `FORCE_COLOR` is set, off for
`TERM=dumb`. A progress bar redraws one line on a terminal and prints a plain line at every
tenth of the work elsewhere, so logs stay readable.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

RESET = "\x1b[0m"
STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def colour_enabled(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Terminal:
    """Prints to stdout (results, progress) and stderr (errors), styled when allowed."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.colour = colour_enabled(self.out)
        self.err_colour = colour_enabled(self.err)

    def style(self, text: str, *styles: str, stream: TextIO | None = None) -> str:
        enabled = self.err_colour if stream is self.err else self.colour
        if not enabled or not styles:
            return text
        codes = ";".join(STYLES[s] for s in styles)
        return f"\x1b[{codes}m{text}{RESET}"

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.say(self.style(text, "bold"))

    def ok(self, text: str) -> None:
        self.say(self.style(text, "green"))

    def warn(self, text: str) -> None:
        print(self.style(f"warning: {text}", "yellow", stream=self.err), file=self.err,
              flush=True)

    def error(self, message: str, fix: str = "") -> None:
        print(self.style(f"error: {message}", "red", "bold", stream=self.err), file=self.err,
              flush=True)
        if fix:
            print(self.style(f"  fix: {fix}", "yellow", stream=self.err), file=self.err,
                  flush=True)

    def progress(self, total: int, label: str, unit: str = "") -> ProgressBar:
        return ProgressBar(self, total, label, unit)


class ProgressBar:
    """`update(done)` as work advances, `finish()` at the end (prints the elapsed time)."""

    WIDTH = 28

    def __init__(self, terminal: Terminal, total: int, label: str, unit: str = ""):
        self.terminal = terminal
        self.total = max(total, 0)
        self.label = label
        self.unit = f" {unit}" if unit else ""
        self.started = time.monotonic()
        self.done = 0
        self.live = terminal.colour  # redraw in place only on a terminal
        self._last_tenth = -1
        self._last_draw = 0.0

    def _fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 1.0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        fraction = self._fraction()
        if self.live:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and done < self.total:
                return
            self._last_draw = now
            filled = int(fraction * self.WIDTH)
            bar = "█" * filled + "·" * (self.WIDTH - filled)
            text = (f"\r{self.label} {self.terminal.style(bar, 'cyan')} {fraction:4.0%} "
                    f"{done:,}/{self.total:,}{self.unit} {note}")
            print(text[:200] + "\x1b[K", end="", file=self.terminal.out, flush=True)
            return
        tenth = int(fraction * 10)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.terminal.say(f"{self.label} {fraction:4.0%} {done:,}/{self.total:,}{self.unit}"
                              + (f" {note}" if note else ""))

    def finish(self, summary: str = "") -> None:
        elapsed = time.monotonic() - self.started
        if self.live:
            print("\r\x1b[K", end="", file=self.terminal.out, flush=True)
        elif self._last_tenth < 10:
            self.update(self.total)
        tail = f": {summary}" if summary else ""
        self.terminal.say(f"{self.label} done in {elapsed:.1f} s{tail}")
