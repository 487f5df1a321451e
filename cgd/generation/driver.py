"""The one shard driver: a stage's rows generated shard by shard, resumable and fingerprinted.

Stages 02-04 (cgd.distill.augment) and stage 06 (cgd.evaluation.evaluate) differ only in what one
shard asks the backend; everything around it is here: the shard store and its fingerprint, pruning
shards left by a larger input, the to-do list, opening the backend only if a shard is missing (and
closing it on any exit), the progress bar, merging, the id check, and throughput.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cgd.generation.base import Backend, Completion, opened
from cgd.runtime import shards
from cgd.runtime.progress import bar


@dataclass
class ShardRun:
    """What one run of a stage did: shards resumed, tokens and seconds spent generating."""

    stage: str
    rows: int = 0
    shards: int = 0
    shards_resumed: int = 0
    restarted: bool = False  # the inputs' fingerprint changed: earlier shards were discarded
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generation_seconds: float = 0.0
    wall_seconds: float = 0.0
    backend: dict = field(default_factory=dict)  # name, startup and close seconds (generation.opened)

    def timed(self, call: Callable[[], list[Completion]]) -> list[Completion]:
        """Run one backend call, adding its seconds and tokens to this run."""
        t0 = time.perf_counter()
        completions = call()
        self.generation_seconds += time.perf_counter() - t0
        for c in completions:
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens
        return completions

    def tokens_per_second(self) -> float | None:
        rate = self.completion_tokens / self.generation_seconds if self.generation_seconds else None
        return round(rate, 1) if rate else None


# (one shard's rows, the open backend, the run to account in) -> the shard's output rows, in order
ShardFn = Callable[[list[dict], Backend, ShardRun], list[dict]]


def run_shards(stage: str, rows: list[dict], shard_size: int, out_dir: str | Path, fingerprint: str,
               backend_factory: Callable[[], Backend], generate_shard: ShardFn) -> tuple[list[dict], ShardRun]:
    """Every row through `generate_shard`, `shard_size` rows at a time, each shard written
    atomically under out_dir/shards; finished shards are kept, so a killed run resumes where it
    stopped and writes what an uninterrupted one would (requests are seeded per row id). The backend
    is made only if some shard is missing and closed when the stage ends, even on an error."""
    start = time.perf_counter()
    store = shards.ShardStore(out_dir, fingerprint)
    n_shards = math.ceil(len(rows) / shard_size)
    store.prune(n_shards)
    todo = [k for k in range(n_shards) if not store.done(k)]
    run = ShardRun(stage, rows=len(rows), shards=n_shards, shards_resumed=n_shards - len(todo),
                   restarted=store.restarted)
    with opened(backend_factory, bool(todo)) as (backend, run.backend):
        for k in bar(todo, desc=stage, unit="shard"):
            store.write(k, generate_shard(rows[k * shard_size:(k + 1) * shard_size], backend, run))
    merged = [row for k in range(n_shards) for row in store.read(k)]
    if [r["id"] for r in merged] != [r["id"] for r in rows]:
        raise RuntimeError(f"{stage}: shard contents do not match the input rows; delete {out_dir}")
    run.wall_seconds = time.perf_counter() - start
    return merged, run
