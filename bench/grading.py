"""Grading throughput: 5,000 MATH predictions through cgd.grading.rules, serial vs the worker pool.

Predictions are the MATH test set's reference solutions (which end in \\boxed{answer}); a share of
them is perturbed so the final answer is wrong (a number changed, or "+ 1" appended). Both runs
grade the same predictions in one process; prints answers/s for each, the ratio, the verdicts
against what they should be, and the reasons (timeouts included). Target: the pool grades the
whole set in under 60 s on 2 cores, with every sample bounded by the math-verify timeout.

    .venv/bin/python bench/grading.py [--n 5000] [--workers 2] [--perturbed 0.5] [--serial-n 1000]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter

from cgd.data import assets
from cgd.grading import answers
from cgd.grading import rules as grading
from cgd.runtime.io import read_jsonl


def perturb(solution: str, gold: str, rng: random.Random) -> str:
    """The same solution with a wrong final answer in its last \\boxed{}."""
    number = re.fullmatch(r"-?\d+(\.\d+)?", gold.strip())
    wrong = str(int(gold) + rng.choice([1, -1, 10])) if number and "." not in gold else f"{gold} + 1"
    head, _, _ = solution.rpartition("\\boxed{")
    return f"{head}\\boxed{{{wrong}}}."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--perturbed", type=float, default=0.5, help="share of predictions made wrong")
    parser.add_argument("--serial-n", type=int, default=1000,
                        help="predictions for the serial baseline (its rate is per answer)")
    parser.add_argument("--timeout", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(0)
    rows = list(read_jsonl(assets.math_data_file("math/test.jsonl")))[:args.n]
    items, expected = [], []
    for r in rows:
        gold = answers.last_boxed(r["solution"])
        wrong = rng.random() < args.perturbed
        items.append((grading.Key(gold, "math"), perturb(r["solution"], gold, rng) if wrong else r["solution"]))
        expected.append(not wrong)

    start = time.perf_counter()
    serial = grading.grade_many(items[:args.serial_n], grading.Rules(args.timeout), workers=1, progress=False)
    t_serial = time.perf_counter() - start
    start = time.perf_counter()
    pooled = grading.grade_many(items, grading.Rules(args.timeout), workers=args.workers, progress=False)
    t_pool = time.perf_counter() - start

    rate_serial, rate_pool = len(serial) / t_serial, len(pooled) / t_pool
    assert pooled[:len(serial)] == serial, "the pool must grade exactly as the serial run"
    refs = [v.correct for v, e in zip(pooled, expected) if e]
    perturbed = [v.correct for v, e in zip(pooled, expected) if not e]
    print(f"predictions: {len(items)} MATH test solutions, {len(perturbed)} perturbed to a wrong answer")
    print(f"serial      : {rate_serial:8.1f} answers/s ({len(serial)} in {t_serial:.1f} s)")
    print(f"{args.workers} workers   : {rate_pool:8.1f} answers/s ({len(pooled)} in {t_pool:.1f} s; "
          f"target < 60 s)")
    print(f"ratio       : {rate_pool / rate_serial:.2f}x")
    print(f"references graded correct: {sum(refs)}/{len(refs)} ({100 * sum(refs) / len(refs):.1f}%)")
    print(f"perturbed graded wrong   : {len(perturbed) - sum(perturbed)}/{len(perturbed)}")
    print(f"reasons: {dict(sorted(Counter(v.reason for v in pooled).items()))}")


if __name__ == "__main__":
    main()
