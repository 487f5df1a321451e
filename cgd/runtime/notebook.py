"""Helpers the numbered notebooks share, so each reads as the method and not as plumbing."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path


def enter_repo_root() -> Path:
    """Run from the repository root whether JupyterLab started the kernel in notebooks/ or not."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() and (candidate / "cgd").is_dir():
            os.chdir(candidate)
            return candidate
    raise RuntimeError(f"no repository root (a folder with dvc.yaml and cgd/) above {here}")


@contextmanager
def timed(label: str, unit: str = "rows"):
    """Log wall time and throughput of a block: `with timed("clean") as t: ...; t.count = n`."""

    class _Timer:
        count = 0
        seconds = 0.0

    timer = _Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start
        rate = timer.count / timer.seconds if timer.seconds > 0 else float("inf")
        print(f"{label}: {timer.count} {unit} in {timer.seconds:.2f} s ({rate:,.0f} {unit}/s)")


def show(shown) -> None:
    """Put what a step returned on the page: text printed ("**bold**" as Markdown), frames as
    tables, figures as images (then closed, so a cell never shows one twice)."""
    from IPython.display import Markdown, display

    for item in getattr(shown, "items", shown):
        if isinstance(item, str):
            display(Markdown(item)) if item.startswith("**") else print(item)
        elif hasattr(item, "savefig"):
            import matplotlib.pyplot as plt

            display(item)
            plt.close(item)
        else:
            display(item)
