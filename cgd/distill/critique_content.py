"""The critique-content ablation's data: stage 04's rows with each training row's critique replaced.

The revised paper (the release README's "Critique Content Ablation") retrains CGD with critiques that
are (A) specific and relevant: the main run's own; (B) specific but irrelevant: another row's critique,
written by the same teacher in the same run; (C) generic: one text that fits any answer. Only the
critique changes: the question, the student's answer y' and the refined answer ŷ the student learns to
write stay those of the row, so a difference from A measures what the critique's content adds.

B is a derangement of the rows the student trains on (status ok, in the mixture): a random cyclic
permutation (Sattolo's algorithm), so no row keeps its own critique. Two rows can hold the same
critique text (a teacher repeating itself); the report counts the rows whose new critique reads the
same as their own, and the rows whose new critique concludes otherwise than their own did.

C's text is a versioned file (GENERIC_FILE, or ablations.critique_content.generic_file). It carries
no "Conclusion: right/wrong" line: a verdict would tell the student whether this answer is right,
which is information about the row, the thing C takes away.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from cgd.distill.status import OK
from cgd.grading import labels

VARIANTS = ("irrelevant", "generic")
LETTERS = {"relevant": "A", "irrelevant": "B", "generic": "C"}  # the release README's conditions
TITLES = {"relevant": "specific and relevant (the main run)", "irrelevant": "specific but irrelevant",
          "generic": "generic"}
GENERIC_FILE = Path(__file__).with_name("generic_critique.yaml")


@dataclass(frozen=True)
class GenericCritique:
    text: str
    version: str  # the file's `version`, or custom:<sha256 prefix> for a file without one
    source: str  # the file it came from


def load_generic(path: str | Path | None = None) -> GenericCritique:
    """C's critique: a YAML file with `text` and optionally `version` (the built-in one has both)."""
    path = Path(path) if path else GENERIC_FILE
    raw = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str) or not doc["text"].strip() \
            or set(doc) - {"text", "version"}:
        raise ValueError(f"{path} must be a mapping with a non-empty `text` and optionally a `version`, "
                         "and nothing else")
    if (verdict := labels.conclusion(doc["text"])) != "missing":
        raise ValueError(f"{path}: the generic critique reads as concluding '{verdict}'; a verdict "
                         "is information about the row, which the generic condition takes away: remove it")
    version = doc.get("version") or f"custom:{hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    name = str(path.relative_to(GENERIC_FILE.parents[2])) if path.is_relative_to(GENERIC_FILE.parents[2]) else str(path)
    return GenericCritique(doc["text"].strip(), str(version), name)


def derangement(n: int, seed: int) -> list[int]:
    """A uniformly random cyclic permutation of range(n) (Sattolo): no index maps to itself."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 rows, not {n}")
    order = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: the permutation is one cycle
        order[i], order[j] = order[j], order[i]
    return order


def replace(rows: list[dict], variant: str, seed: int, generic: GenericCritique | None = None) -> tuple[list[dict], dict]:
    """Stage-04 rows with each training row's critique replaced per `variant`; the other rows pass
    unchanged (training excludes them, and says so). Each replaced row keeps its own critique under
    `original_critique`. Returns (rows, report)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown critique-content variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    train = [i for i, r in enumerate(rows) if r["status"] == OK and r.get("in_mixture")]
    out = [dict(r) for r in rows]
    report = {"variant": variant, "letter": LETTERS[variant], "rows": len(rows), "replaced": len(train),
              "passed_unchanged": len(rows) - len(train)}
    if variant == "irrelevant":
        order = derangement(len(train), seed)
        for i, j in zip(train, order):
            out[i]["critique"] = rows[train[j]]["critique"]
        report["seed"] = seed
        report["same_text_as_own"] = sum(out[i]["critique"] == rows[i]["critique"] for i in train)
        report["conclusion_differs"] = sum(labels.conclusion(out[i]["critique"]) != labels.conclusion(rows[i]["critique"])
                                           for i in train)
    else:
        generic = generic or load_generic()
        for i in train:
            out[i]["critique"] = generic.text
        report["generic_version"] = generic.version
        report["generic_source"] = generic.source
    for i in train:
        out[i]["original_critique"] = rows[i]["critique"]
        out[i]["critique_content"] = variant
    return out, report
