"""Resumable stage outputs: rows in fixed-size shards, each written atomically.

A shard file exists only once all its rows are generated (write to a temporary file, then
rename), so a run killed mid-way loses at most the shard in progress and a rerun picks up at
the first missing shard. `manifest.json` records a fingerprint of everything the rows depend
on (input rows, params, prompt, model); a rerun with a different fingerprint starts over
instead of mixing outputs of two settings.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from cgd.runtime.io import read_json, read_jsonl, write_json, write_jsonl


def fingerprint(*parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_digest(*paths: str | Path) -> str:
    """One digest of source files and package folders (their *.py, in path order), for fingerprints
    that must change when the code that makes a stage's rows does."""
    files = []
    for path in map(Path, paths):
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return fingerprint([(f.name, file_digest(f)) for f in files])


class ShardStore:
    def __init__(self, root: str | Path, fingerprint: str):
        self.root = Path(root)
        self.dir = self.root / "shards"
        manifest = self.root / "manifest.json"
        self.restarted = False
        if manifest.exists() and read_json(manifest).get("fingerprint") != fingerprint:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.restarted = True
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(manifest, {"fingerprint": fingerprint})

    def path(self, k: int) -> Path:
        return self.dir / f"shard-{k:05d}.jsonl"

    def done(self, k: int) -> bool:
        return self.path(k).exists()

    def write(self, k: int, rows: list[dict]) -> None:
        write_jsonl(self.path(k), rows)

    def read(self, k: int) -> list[dict]:
        return list(read_jsonl(self.path(k)))

    def prune(self, n_shards: int) -> None:
        """Drop shards past the end (left by an earlier, larger input with the same settings)."""
        for path in self.dir.glob("shard-*.jsonl"):
            if int(path.stem.split("-")[1]) >= n_shards:
                path.unlink()
