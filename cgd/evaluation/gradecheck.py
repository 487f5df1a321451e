"""The grading round trip: does each benchmark's grader accept its own gold answers?

For every problem, two responses written the way the evaluation prompt asks (reasoning, then the
final answer in \\boxed{}, the option letter for multiple choice): one stating the gold answer, which
must grade correct, and one stating a different answer, which must grade wrong. A benchmark whose
golds its grader cannot read, or whose tolerance accepts anything, fails here before any model runs.
`python -m cgd check-grading` runs it on the benchmarks as loaded (the hub ones from a mirror),
under our rule (the figure that must pass) and under the authors' harness rule (reported beside it:
that rule is what it is, and its failures show its quirks).
"""

from __future__ import annotations

import re
from collections import Counter

from cgd.data.benchmarks import LETTERS, Problem
from cgd.grading.judge import GRADERS, judge
from cgd.grading.rules import Rules, split_top_level, to_number


def _format(x: float, integer: bool) -> str:
    return str(int(round(x))) if integer else f"{x:.6g}"


def _other_number(text: str, integer: bool) -> str | None:
    value = to_number(text)
    if value is None:
        return None
    return _format(value + max(1.0, abs(value)), integer)  # at least 1 away, and 100% of |value|


def wrong_answer(p: Problem) -> str:
    """An answer to `p` that differs from its gold under any reasonable reading."""
    if p.answer_type == "choice":
        return LETTERS[(LETTERS.index(p.answer) + 1) % p.n_options]
    if p.answer_type == "theoremqa":
        if p.kind == "bool":
            return "False" if p.answer.strip().lower() == "true" else "True"
        if p.kind == "option":
            letter = re.sub(r"[^a-j]", "", p.answer.lower())
            return f"({'a' if letter != 'a' else 'b'})"
        if p.kind.startswith("list"):
            items = split_top_level(p.answer.strip()[1:-1])
            items[0] = _other_number(items[0], p.kind == "list of integer")
            return "[" + ", ".join(items) + "]"
        return _other_number(p.answer, p.kind == "integer")
    # plain and scientific numbers ("4.5e33": "4.5e33 + 1" would be the same number to any tolerance)
    number = _other_number(p.answer, False) if re.fullmatch(r"-?[\d.,]+(?:[eE][-+]?\d+)?", p.answer.strip()) else None
    return number or f"{p.answer} + 1"


def responses(p: Problem) -> tuple[str, str]:
    """(a response stating the gold answer, one stating a wrong answer)."""
    def say(answer: str) -> str:
        return f"Working through the problem step by step gives the result.\n\nThe final answer is $\\boxed{{{answer}}}$."

    return say(p.answer), say(wrong_answer(p))


def round_trip(problems: list[Problem], rules: Rules = Rules()) -> dict:
    """Per-problem verdicts on both responses, under each rule; the share that graded as they should.
    The top level is our rule's; `harness` holds the authors' rule's."""
    failures = {g: [] for g in GRADERS}
    reasons = {g: Counter() for g in GRADERS}
    for p in problems:
        right, wrong = responses(p)
        on_right, on_wrong = judge(p.key(), right, rules), judge(p.key(), wrong, rules)
        for g in GRADERS:
            v_right, v_wrong = on_right[g], on_wrong[g]
            reasons[g][f"gold:{v_right.reason}"] += 1
            reasons[g][f"other:{v_wrong.reason}"] += 1
            if not v_right.correct or v_wrong.correct:
                failures[g].append({"id": p.id, "gold": p.answer, "kind": p.kind, "gold_graded": v_right.correct,
                                    "other": wrong_answer(p), "other_graded": v_wrong.correct})
    n = len(problems)

    def summary(g: str) -> dict:
        return {"problems": n, "as_expected": n - len(failures[g]),
                "share": round((n - len(failures[g])) / n, 4) if n else None,
                "reasons": dict(sorted(reasons[g].items())), "failures": failures[g]}

    return {**summary("committed"), "harness": summary("harness")}
