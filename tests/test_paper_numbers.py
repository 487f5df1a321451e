"""The paper's numbers (data/paper/paper_numbers.csv): complete, well formed, and consistent."""

from collections import Counter

import pytest

from cgd.data import benchmarks
from cgd.reporting import paper

ROWS = paper.load()


def test_every_reported_table_is_transcribed():
    per_table = Counter(r["table"] for r in ROWS)
    # rows per table: methods x cells, as the paper prints them
    # table2's HumanEval column and the cross-family table come from the release's README
    assert per_table == {"table1": 130, "table2": 25, "table3": 12, "table4": 28, "table5": 5, "table6": 60,
                         "table7": 100, "table8": 50, "table9": 4, "table10": 4, "table11": 4,
                         "fig6": 4, "fig9": 2, "fig10": 3, "fig11": 2, "critique_content": 18,
                         "reasoning": 14, "critique_quality": 19, "cross_family": 30}


def test_rows_are_unique_and_named_consistently():
    keys = [(r["table"], r["model"], r["method"], r["setting"], r["benchmark"]) for r in ROWS]
    assert len(keys) == len(set(keys))
    methods = {"base", "sft", "distilled_sft", "cft", "cft_gpt4o", "cgd", "delta_cgd_minus_cft",
               "simplerl_zero", "teacher", "baseline_sft", "wrong", "right", "wrong_minus_right"}
    assert {r["method"] for r in ROWS} <= methods
    cells = set(benchmarks.names()) | {"avg_group1", "avg_group2", "avg", "ifeval", "musr", "truthfulqa",
                                       "bbh", "humaneval", "mean_entropy", "grad_norm_mean", "grad_norm_std",
                                       "batch_size", "learning_rate", "max_length", "epochs", "warmup_ratio",
                                       "attention_critique", "attention_student_answer", "attention_problem",
                                       "factual_correct", "counterfactual_correct", "informativeness", "specificity",
                                       "both_at_least_4", "max_informativeness"}
    assert {r["benchmark"] for r in ROWS} <= cells


def test_spot_values_against_the_paper():
    def value(table, model, method, bench, setting=""):
        (hit,) = [r["value"] for r in ROWS if (r["table"], r["model"], r["method"], r["setting"],
                                                r["benchmark"]) == (table, model, method, setting, bench)]
        return hit

    assert value("table1", "LLaMA3.1-8B Instruct", "cgd", "amc23") == 37.5
    assert value("table1", "S1.1-3B", "delta_cgd_minus_cft", "math500") == 12.2
    assert value("table2", "LLaMA3.1-8B Instruct", "cft_gpt4o", "ifeval") == 55.6
    assert value("table2", "LLaMA3.1-8B Instruct", "cgd", "humaneval") == 64.6
    assert value("cross_family", "Qwen2.5-Math-7B", "cgd", "amc23", "teacher=Claude Sonnet 3.7") == 67.5
    assert value("cross_family", "Qwen2.5-Math-7B", "cft_gpt4o", "avg") == 48.9
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
    assert len(marked) == 11  # the 11th: the release's cross-family CFT (S1.1-32B) average
    checked = [r for r in ROWS if r["benchmark"].startswith("avg") or r["method"] == "delta_cgd_minus_cft"]
    assert len(checked) > 100


def test_a_mistyped_value_is_caught():
    rows = [dict(r) for r in ROWS]
    cell = next(r for r in rows if (r["table"], r["method"], r["benchmark"]) == ("table4", "cgd", "gsm8k"))
    cell["value"] += 1.0
    assert len(paper.inconsistencies(rows)) == len(paper.inconsistencies(ROWS)) + 1


def test_table5_is_what_the_paper_profiles_train_with():
    from cgd.config.profiles import load_profile

    table5 = {r["benchmark"]: r["value"] for r in ROWS if r["table"] == "table5"}
    for name in ("llama8b-webinstruct", "llama8b-metamathqa", "s1-webinstruct"):
        train = load_profile(f"configs/profiles/{name}.yaml")["train"]
        assert (train["global_batch_size"], train["lr"], train["max_length"], train["epochs"],
                train["warmup_ratio"]) == (table5["batch_size"], table5["learning_rate"], table5["max_length"],
                                           table5["epochs"], table5["warmup_ratio"]), name


def test_appendix_c_numbers_are_shares_and_outcomes():
    shares = [r for r in ROWS if r["benchmark"].startswith("attention_")]
    assert shares and all(0 <= r["value"] <= 100 for r in shares)
    assert {r["value"] for r in ROWS if r["table"] == "table11"} == {0.0, 1.0}
    fig6 = {(r["benchmark"], r["setting"]): r["value"] for r in ROWS if r["table"] == "fig6"}
    assert fig6[("math500", "epoch=last")] - fig6[("math500", "epoch=first")] == pytest.approx(0.9)
