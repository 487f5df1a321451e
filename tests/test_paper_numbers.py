"""The paper's numbers (data/paper/paper_numbers.csv): complete, well formed, and consistent."""

from collections import Counter

from cgd import benchmarks, paper

ROWS = paper.load()


def test_every_reported_table_is_transcribed():
    per_table = Counter(r["table"] for r in ROWS)
    # rows per table: methods x cells, as the paper prints them
    assert per_table == {"table1": 130, "table2": 20, "table3": 12, "table4": 28, "table6": 60,
                         "table7": 100, "table8": 50, "table9": 4, "table10": 4}


def test_rows_are_unique_and_named_consistently():
    keys = [(r["table"], r["model"], r["method"], r["setting"], r["benchmark"]) for r in ROWS]
    assert len(keys) == len(set(keys))
    methods = {"base", "sft", "distilled_sft", "cft", "cft_gpt4o", "cgd", "delta_cgd_minus_cft",
               "simplerl_zero", "teacher", "baseline_sft"}
    assert {r["method"] for r in ROWS} <= methods
    cells = set(benchmarks.names()) | {"avg_group1", "avg_group2", "avg", "ifeval", "musr", "truthfulqa",
                                       "bbh", "mean_entropy", "grad_norm_mean", "grad_norm_std"}
    assert {r["benchmark"] for r in ROWS} <= cells


def test_spot_values_against_the_paper():
    def value(table, model, method, bench, setting=""):
        (hit,) = [r["value"] for r in ROWS if (r["table"], r["model"], r["method"], r["setting"],
                                                r["benchmark"]) == (table, model, method, setting, bench)]
        return hit

    assert value("table1", "LLaMA3.1-8B Instruct", "cgd", "amc23") == 37.5
    assert value("table1", "S1.1-3B", "delta_cgd_minus_cft", "math500") == 12.2
    assert value("table2", "LLaMA3.1-8B Instruct", "cft_gpt4o", "ifeval") == 55.6
    assert value("table3", "LLaMA3.1-8B", "simplerl_zero", "avg") == 10.6
    assert value("table4", "LLaMA3.1-8B Instruct", "cft", "avg", "lr=5e-6") == 30.1
    assert value("table8", "LLaMA3.1-8B Instruct", "cgd", "amc23", "teacher=S1.1-32B") == 42.5
    assert value("table10", "LLaMA3.1-8B Instruct", "cgd", "grad_norm_mean", "condition=with critique") == 1802.7


def test_averages_and_deltas_match_their_rows_except_where_the_paper_disagrees():
    """Avg. cells are plain means of their group, Δ cells are CGD − CFT, within rounding; the few
    cells where the paper's own arithmetic disagrees are marked in `note` (a typo in a transcribed
    value shows up here as a new disagreement)."""
    found = set(paper.inconsistencies(ROWS))
    marked = {(r["table"], r["model"], r["method"], r["setting"], r["benchmark"])
              for r in ROWS if r["note"].startswith("paper_inconsistent")}
    assert found == marked
    assert len(marked) == 10
    checked = [r for r in ROWS if r["benchmark"].startswith("avg") or r["method"] == "delta_cgd_minus_cft"]
    assert len(checked) > 100


def test_a_mistyped_value_is_caught():
    rows = [dict(r) for r in ROWS]
    cell = next(r for r in rows if (r["table"], r["method"], r["benchmark"]) == ("table4", "cgd", "gsm8k"))
    cell["value"] += 1.0
    assert len(paper.inconsistencies(rows)) == len(paper.inconsistencies(ROWS)) + 1
