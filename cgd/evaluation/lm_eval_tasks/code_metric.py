"""lm-eval hooks of cgd's code tasks (the YAMLs beside this file name them with `!function`): the
programs to run from the model's replies, and their grade through cgd.evaluation.code_exec."""

from cgd.evaluation import code_exec


def completion_programs(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """The prompt (signature and docstring) followed by each completion."""
    return [[doc["prompt"] + r for r in replies] for replies, doc in zip(resps, docs)]


def fenced_programs(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """The prompt followed by each reply up to its closing code fence (the reply continues the
    prompt inside an opened ```python block)."""
    return [[doc["prompt"] + r.split("```", 1)[0] for r in replies] for replies, doc in zip(resps, docs)]


def score(references: list[str], predictions: list[list[str]], k=1) -> dict[str, float]:
    return code_exec.score(references, predictions, k)
