"""What a finished rehearsal's outputs say beyond dvc repro's exit code: rows whose generation failed.

It reads the JSONL files the stages wrote and imports nothing of cgd.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# A prompt longer than the role's max_model_len is an error row by design (counted, the rest go on).
_OVERLONG = re.compile(r"^prompt has \d+ tokens; \w+\.max_model_len is \d+$")


def generation_errors(scratch: Path) -> dict[str, dict[str, int]]:
    """Rows whose generation failed (a `*error` field set), by file and message, in the merged outputs
    of stages 02-04 and 06 and of every ablation point: a stage can finish with every request refused
    (a served model once rejected each evaluation request), and its accuracies would read as zeros.
    Over-long prompts are left out: they are counted error rows by design."""
    out: dict[str, dict[str, int]] = {}
    files = [p for root in ("data", "sweeps") for p in sorted((scratch / root).rglob("*.jsonl"))
             if "shards" not in p.parts and p.name not in ("dropped.jsonl", "train.jsonl")]
    for path in files:
        counts: dict[str, int] = {}
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            for key, value in row.items():
                if key.endswith("error") and value and not _OVERLONG.match(str(value)):
                    message = str(value).splitlines()[0][:120]
                    counts[message] = counts.get(message, 0) + 1
        if counts:
            out[str(path.relative_to(scratch))] = counts
    return out
