"""A generated row's status: `ok`, or why its text cannot be used (error, empty, truncated).

A leaf module, so that readers of stage outputs (training records, reports) can name the status
without importing the generation stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cgd.generation.base import Completion

OK = "ok"


def generation_status(c: Completion) -> str:
    if c.finish_reason == "error":
        return "error"
    if not c.text.strip():
        return "empty"
    if c.finish_reason == "length":
        return "truncated"
    return OK
