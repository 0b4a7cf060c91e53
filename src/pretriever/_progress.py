"""Progress of long steps: a bar with rate and ETA on a terminal, one log line per 10% elsewhere.

Why not tqdm alone: on a terminal tqdm is the right thing, but in CI logs and files its carriage
returns make one unreadable line (and tqdm's own non-terminal default is silence), while a job that
runs for minutes there must still say how far it is and how long it has left. So the same call
draws a tqdm bar where stderr is a terminal and writes a plain line at every 10% otherwise;
``enabled=False`` (the CLI's ``--quiet``) silences both. Status lines (``write``) follow the same
rule: above the bar on a terminal, as lines in a log, nothing when quiet.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

PREFIX = "pretriever: "


def is_terminal(stream: TextIO | None = None) -> bool:
    """True where ``stream`` (default stderr) is an interactive terminal."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``total`` units of work named ``desc``; ``update(n)`` as they finish.

    Usable as a context manager; ``close()`` is idempotent. ``every`` is the share of the work
    between two log lines when stderr is not a terminal.
    """

    def __init__(self, total: int, desc: str, unit: str = "it", *, enabled: bool = True,
                 initial: int = 0, every: float = 0.1, stream: TextIO | None = None) -> None:
        self.total = max(0, int(total))
        self.desc, self.unit = desc, unit.strip()
        self.enabled = enabled
        self.stream = stream
        self.count = initial
        self.every = every
        self.postfix: dict[str, Any] = {}
        self._started = time.perf_counter()
        self._initial = initial
        self._next = self._threshold(initial)
        self._closed = False
        self._bar: Any = None
        if enabled and is_terminal(stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=initial, desc=desc, unit=f" {self.unit}",
                             file=stream or sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def _threshold(self, done: int) -> int:
        """The count at which the next log line is due: the next multiple of ``every``."""
        if self.total <= 0:
            return 1 << 62
        step = max(1, int(self.total * self.every))
        return (done // step + 1) * step

    def _out(self) -> TextIO:
        return self.stream or sys.stderr

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and self.count >= self._next and self.count < self.total:
            self._log_line()
            self._next = self._threshold(self.count)

    def set_postfix(self, **values: Any) -> None:
        """Values shown beside the bar (loss, ...) and appended to the log lines."""
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        """A status line that does not break the bar (silent when disabled)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line, file=self._out())
        else:
            print(f"{PREFIX}{line}", file=self._out(), flush=True)

    def _log_line(self) -> None:
        elapsed = time.perf_counter() - self._started
        rate = (self.count - self._initial) / elapsed if elapsed > 0 else 0.0
        share = 100.0 * self.count / self.total if self.total else 100.0
        left = (self.total - self.count) / rate if rate > 0 else float("nan")
        eta = _duration(left) if left == left else "?"
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{PREFIX}{self.desc}: {share:.0f}% ({self.count:,}/{self.total:,} {self.unit}, "
              f"{rate:.3g} {self.unit}/s, elapsed {_duration(elapsed)}, ETA {eta}{extra})",
              file=self._out(), flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.count > self._initial:
            self._log_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
