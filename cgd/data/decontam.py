"""Word n-gram decontamination of training questions against evaluation problems.

As in s1: a training question is contaminated if it shares any word 8-gram with a benchmark
problem. Benchmark problems shorter than n words count as contaminating when they appear whole.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


class NgramIndex:
    """Maps each benchmark n-gram to the benchmark it came from; lookups are O(question length)."""

    def __init__(self, n: int):
        self.n = n
        self.grams: dict[tuple[str, ...], str] = {}
        self.short: dict[int, dict[tuple[str, ...], str]] = defaultdict(dict)

    def add(self, text: str, source: str) -> None:
        tokens = words(text)
        if not tokens:
            return
        if len(tokens) < self.n:
            self.short[len(tokens)].setdefault(tuple(tokens), source)
            return
        for gram in ngrams(tokens, self.n):
            self.grams.setdefault(gram, source)

    def match(self, text: str) -> tuple[str, str] | None:
        """(benchmark, shared n-gram) for the first overlap of `text`, or None when it is clean."""
        tokens = words(text)
        for gram in ngrams(tokens, self.n):
            if gram in self.grams:
                return self.grams[gram], " ".join(gram)
        for k, table in self.short.items():
            for gram in ngrams(tokens, k):
                if gram in table:
                    return table[gram], " ".join(gram)
        return None
