"""One progress bar for the whole project: a widget in JupyterLab, text everywhere else.

Every loop that takes long (shards, requests, grading, diagnostics, sweep points) shows its bar
through `bar()`. Where it renders depends on who runs the notebook:

- **JupyterLab** (a kernel with a frontend): an ipywidgets bar, updated in place;
- **papermill, DVC, CI, a terminal** (`text`): a text bar, written to the notebook's stderr (the
  executed copy keeps it) and also straight to the terminal that started the run, so `make repro`
  shows rows done / total, the rate and the time left inside each stage. Into a log that is not a
  terminal (CI) the bar writes one line per update at most every `LOG_INTERVAL_S`, not
  carriage-return redraws that pile up into one endless line. A loop done within `DELAY_S`
  prints no bar at all.

Which applies: `CGD_PROGRESS=widget|text` when set; else text inside a DVC stage (DVC sets
`DVC_STAGE`) or a papermill run (the kernel launcher, cgd/runtime/kernel.py, sets `CGD_PROGRESS=text`
when papermill started it), or outside a Jupyter kernel; else the widget where ipywidgets is
installed.
"""

from __future__ import annotations

import io
import os
import sys

ENV = "CGD_PROGRESS"
LOG_INTERVAL_S = 30.0  # a bar's line in a non-terminal log at most this often
TTY_INTERVAL_S = 1.0
DELAY_S = 5.0  # a text bar appears only once its loop has run this long: quick loops print nothing


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def mode() -> str:
    """'widget' or 'text' (module docstring)."""
    forced = os.environ.get(ENV)
    if forced in ("widget", "text"):
        return forced
    if os.environ.get("DVC_STAGE") or not _in_kernel():
        return "text"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "text"
    return "widget"


class _Tee(io.TextIOBase):
    """The text bar's stream: the notebook's stderr, and the terminal behind the kernel.

    In a kernel, ipykernel replaces sys.stderr with a stream to the notebook and keeps a copy of
    the process's original stderr (`fileno()` returns it): the terminal of `make repro`, or a CI
    log. Outside a kernel sys.stderr is that terminal already, so nothing is written twice."""

    def __init__(self):
        self.notebook = sys.stderr
        self.terminal_fd = None
        self._last = None
        if _in_kernel():
            try:
                self.terminal_fd = sys.stderr.fileno()
            except (OSError, ValueError, io.UnsupportedOperation):
                pass
        target = self.terminal_fd if self.terminal_fd is not None else _fileno(self.notebook)
        self.tty = target is not None and os.isatty(target)

    def write(self, text: str) -> int:
        if not self.tty:  # a log, not a screen: each redraw becomes its own line, a repeated one dropped
            lines = []
            for line in text.replace("\r", "\n").split("\n"):
                if line and line != self._last:
                    lines.append(line)
                    self._last = line
            text = "".join(f"{line}\n" for line in lines)
            if not text:
                return 0
        self.notebook.write(text)
        if self.terminal_fd is not None:
            try:
                os.write(self.terminal_fd, text.encode(errors="replace"))
            except OSError:
                self.terminal_fd = None
        return len(text)

    def flush(self) -> None:
        self.notebook.flush()

    def isatty(self) -> bool:
        return self.tty


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def bar(iterable=None, **kwargs):
    """A tqdm bar (any of tqdm's arguments) in this run's mode."""
    if mode() == "widget":
        from tqdm.notebook import tqdm

        return tqdm(iterable, **kwargs)
    from tqdm.std import tqdm

    stream = _Tee()
    kwargs.setdefault("mininterval", TTY_INTERVAL_S if stream.tty else LOG_INTERVAL_S)
    kwargs.setdefault("delay", DELAY_S)
    if not stream.tty:  # a log: fixed width, and no cursor moves for nested bars (each writes its own lines)
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 140)  # room for vLLM's speed postfix
        kwargs["position"] = 0
    else:
        kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=stream, **kwargs)


def vllm_bar(*args, **kwargs):
    """vLLM's `use_tqdm` callable: its per-request bar through `bar`, without the bar of its
    prompt rendering (milliseconds, one more line per call)."""
    if kwargs.get("desc") == "Rendering prompts":
        kwargs["disable"] = True
    return bar(*args, **kwargs)
