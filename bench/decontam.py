"""Decontamination throughput: the n-gram index vs a naive scan of every benchmark problem.

Both decide the same thing (does a training question share a word n-gram with any benchmark
problem?) on the same rows in one run; prints rows/s for each and their ratio, and checks the
verdicts agree. At paper scale (100k WebInstruct rows) only the index is practical.

    .venv/bin/python bench/decontam.py [--rows 300]
"""

from __future__ import annotations

import argparse
import time

from cgd import config as P
from cgd.data import benchmarks
from cgd.data import sampling as data
from cgd.data.decontam import ngrams, words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000, help="training questions to check")
    parser.add_argument("--ngram", type=int, default=8)
    args = parser.parse_args()

    cfg = P.load("params.yaml")
    names = cfg.data.decontamination.benchmarks
    questions = [r["question"] for _, r in zip(range(args.rows), data.load_pool(cfg.data))]
    problems = [(name, p.problem) for name in names for p in benchmarks.load(name)]

    start = time.perf_counter()
    index = data.build_index(names, args.ngram)
    t_build = time.perf_counter() - start
    start = time.perf_counter()
    indexed = [index.match(q) is not None for q in questions]
    t_lookup = time.perf_counter() - start
    t_index = t_build + t_lookup

    # Baseline: per question, intersect its n-grams with each problem's n-gram set in turn.
    start = time.perf_counter()
    problem_grams = [set(ngrams(words(p), args.ngram)) for _, p in problems]
    naive = []
    for q in questions:
        grams = set(ngrams(words(q), args.ngram))
        naive.append(any(grams & pg for pg in problem_grams))
    t_naive = time.perf_counter() - start

    # Short benchmark problems (< n words) are only handled by the index; compare on the rest.
    disagree = sum(a != b for a, b in zip(indexed, naive) if not (a and not b))
    print(f"questions: {len(questions)}, benchmark problems: {len(problems)} ({', '.join(names)})")
    print(f"naive scan : {len(questions) / t_naive:10.1f} rows/s ({t_naive:.2f} s)")
    print(f"n-gram index: {len(questions) / t_index:10.1f} rows/s ({t_index:.2f} s with the "
          f"{t_build:.2f} s index build; lookups alone {len(questions) / t_lookup:,.0f} rows/s)")
    print(f"speedup: {t_naive / t_index:.1f}x end to end, {t_naive / t_lookup:.0f}x per lookup; "
          f"verdict disagreements: {disagree}")


if __name__ == "__main__":
    main()
