"""The benchmark registry: embedded sets and every hub loader on a local mirror of its schema."""

import json

import pytest

from cgd import benchmarks
from tests.conftest import FIXTURES

HUB = [name for name, b in benchmarks.REGISTRY.items() if b.hub_id]


def test_registry_has_the_papers_benchmarks():
    group1 = {"math500", "minerva", "gsm8k", "olympiadbench", "amc23", "aime24", "aime25"}
    group2 = {"theoremqa", "gpqa", "mmlu_pro"}
    assert {n for n, b in benchmarks.REGISTRY.items() if b.group == 1} >= group1
    assert {n for n, b in benchmarks.REGISTRY.items() if b.group == 2} == group2
    assert set(HUB) == group1 - {"math500", "minerva", "gsm8k"} | group2


@pytest.mark.parametrize("name,rows", [("gsm8k", 1319), ("math500", 500), ("minerva", 272)])
def test_embedded_sets(name, rows):
    problems = benchmarks.load(name)
    assert len(problems) == rows
    assert all(p.answer and p.problem and p.benchmark == name for p in problems)
    assert len({p.id for p in problems}) == rows


def test_every_hub_loader_reads_its_fixture(eval_hub_mirror):
    spec = json.loads((FIXTURES / "eval_hub_rows.json").read_text())
    for name in HUB:
        problems, left_out = benchmarks.load_counted(name, str(eval_hub_mirror))
        rows = spec[benchmarks.REGISTRY[name].hub_id]["rows"]
        assert len(problems) + sum(left_out.values()) == len(rows), name
        assert len({p.id for p in problems}) == len(problems), name
        for p in problems:
            assert p.benchmark == name and p.problem.strip() and p.answer.strip()
            assert p.answer_type in ("math", "number", "choice")


def test_hub_answers_are_normalized(eval_hub_mirror):
    load = lambda name: benchmarks.load_counted(name, str(eval_hub_mirror))  # noqa: E731
    olymp, _ = load("olympiadbench")
    assert [p.answer for p in olymp] == ["40", "-2, 2", "\\frac{5}{6}"]  # lists joined, $ stripped
    amc, _ = load("amc23")
    assert [p.answer for p in amc] == ["27", "4.5"]  # stored as floats on the hub
    aime, _ = load("aime24")
    assert aime[0].answer == "024" and aime[0].id == "aime24-60"
    theorem, left_out = load("theoremqa")
    assert left_out == {"needs_image": 1}
    assert [p.answer for p in theorem] == ["6", "True", "[2, 3]"]
    assert [p.answer_type for p in theorem] == ["number", "math", "math"]


def test_multiple_choice_options_are_lettered(eval_hub_mirror):
    gpqa, _ = benchmarks.load_counted("gpqa", str(eval_hub_mirror))
    for p in gpqa:
        assert p.answer_type == "choice" and p.n_options == 4
        letters = [line[:3] for line in p.problem.splitlines() if line[:1] == "(" and line[2:3] == ")"]
        assert letters == ["(A)", "(B)", "(C)", "(D)"]
    # The correct answer sits at the gold letter, and the order is the same on every load.
    first = gpqa[0]
    assert f"({first.answer}) Photon" in first.problem
    again, _ = benchmarks.load_counted("gpqa", str(eval_hub_mirror))
    assert [p.problem for p in again] == [p.problem for p in gpqa]
    mmlu, _ = benchmarks.load_counted("mmlu_pro", str(eval_hub_mirror))
    assert [(p.answer, p.n_options) for p in mmlu] == [("F", 10), ("B", 4)]
    assert "(F) 11" in mmlu[0].problem and "(J) 16" in mmlu[0].problem


def test_sample_is_seeded_and_in_benchmark_order():
    problems = benchmarks.load("gsm8k")
    a, b = benchmarks.sample(problems, 10, 3), benchmarks.sample(problems, 10, 3)
    assert a == b and len(a) == 10
    order = [problems.index(p) for p in a]
    assert order == sorted(order)
    assert benchmarks.sample(problems, None, 3) == problems
