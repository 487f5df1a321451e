"""The critique-quality judge (the revised paper's LLM-as-judge): the rubric, parsing replies (an
unparsable one is counted, never guessed), the balanced sample, the statistics against hand-computed
values, the stage end to end on the reference backend, and the stage-07 table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgd import config as P
from cgd.evaluation import critique_quality as cq
from cgd.reporting import critique_quality as table
from cgd.reporting import paper
from cgd.runtime.io import read_json, read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def test_the_rubric_is_versioned_and_asks_for_two_score_lines(tmp_path):
    rubric = cq.load_rubric()
    assert rubric.version == "critique-rubric-v1" and rubric.system
    msgs = rubric.render(question="Q?", student_answer="A.", critique="C.")
    assert msgs[0]["role"] == "system" and "Informativeness" in msgs[1]["content"] and "C." in msgs[1]["content"]
    bad = tmp_path / "r.yaml"
    bad.write_text(yaml.safe_dump({"user": "{question} {critique}"}))
    with pytest.raises(ValueError, match="must use exactly"):
        cq.load_rubric(bad)
    bad.write_text(yaml.safe_dump({"user": "{question} {student_answer} {critique}"}))
    assert cq.load_rubric(bad).version.startswith("custom:")


@pytest.mark.parametrize("reply, scores", [
    ("Informativeness: 4\nSpecificity: 5", {"informativeness": 4, "specificity": 5}),
    ("**Informativeness**: 3/5\n**Specificity:** 2", {"informativeness": 3, "specificity": 2}),
    ("Informativeness: 2\nSpecificity: 2\nOn reflection:\nInformativeness: 3\nSpecificity: 4",
     {"informativeness": 3, "specificity": 4}),                 # the last of each
    ("Informativeness: <a number from 1 to 5>\nSpecificity: <a number from 1 to 5>", None),  # the template echoed
    ("Informativeness: 6\nSpecificity: 4", None),                # out of range
    ("Informativeness: 4", None),                                # one score only
    ("The critique is informative (4) and specific (5).", None),  # no score lines
    ("", None),
])
def test_a_reply_parses_to_both_scores_or_to_nothing(reply, scores):
    assert cq.parse(reply) == scores


def _rows(n_wrong: int, n_right: int) -> list[dict]:
    rows = []
    for i in range(n_wrong + n_right):
        wrong = i < n_wrong
        rows.append({"id": f"r{i}", "question": f"What is {i} + {i}?", "student_answer": f"{i} + {i} = {2 * i + wrong}",
                     "critique": (f"The sum {i} + {i} is {2 * i}, not {2 * i + 1}: the last step adds one too many. Add the two numbers again and state the new total as the final answer."
                                  if wrong else "Correct."),
                     "critique_status": "ok", "verifier_correct": not wrong})
    rows.append({"id": "nolabel", "question": "q", "student_answer": "a", "critique": "c", "critique_status": "ok",
                 "verifier_correct": None})
    rows.append({"id": "failed", "question": "q", "student_answer": "a", "critique": "", "critique_status": "error",
                 "verifier_correct": False})
    return rows


def test_the_sample_is_balanced_seeded_and_reports_a_shortfall():
    rows = _rows(10, 3)
    chosen, rep = cq.sample(rows, 8, seed=0)
    assert sum(not r["verifier_correct"] for r in chosen) == 4 and sum(r["verifier_correct"] for r in chosen) == 3
    assert rep == {"rows": 15, "usable": 13, "unusable": 2, "asked": 8, "available_wrong": 10, "judged_wrong": 4,
                   "available_right": 3, "judged_right": 3, "shortfall": 1}
    assert cq.sample(rows, 8, seed=0)[0] == chosen and cq.sample(rows, 8, seed=1)[0] != chosen


def _scored(pairs_wrong, pairs_right, unparsed_wrong=0):
    out = [{"label": "wrong", "scores": {"informativeness": a, "specificity": b}, "finish_reason": "stop"}
           for a, b in pairs_wrong]
    out += [{"label": "right", "scores": {"informativeness": a, "specificity": b}, "finish_reason": "stop"}
            for a, b in pairs_right]
    out += [{"label": "wrong", "scores": None, "finish_reason": "stop"}] * unparsed_wrong
    return out


def test_the_statistics_equal_hand_computed_values():
    wrong = [(5, 5), (5, 4), (4, 4), (3, 5)]
    right = [(3, 4), (4, 4), (2, 3), (3, 3)]
    r = cq.report(_scored(wrong, right, unparsed_wrong=2), resamples=300, seed=0)
    assert r["judged"] == 10 and r["unparsed"] == {"wrong": 2, "right": 0}
    w = r["by_label"]["wrong"]
    assert w["n"] == 4 and w["informativeness"]["mean"] == 4.25 and w["informativeness"]["sd"] == pytest.approx(0.957, abs=1e-3)
    assert w["both_at_least_4"]["mean"] == 75.0 and w["max_informativeness"]["mean"] == 50.0
    assert r["by_label"]["right"]["both_at_least_4"]["mean"] == 25.0 and r["by_label"]["right"]["max_informativeness"]["mean"] == 0.0
    inf = r["wrong_minus_right"]["informativeness"]
    pooled = math.sqrt((np.var([5, 5, 4, 3], ddof=1) + np.var([3, 4, 2, 3], ddof=1)) / 2)
    assert inf["diff"] == 1.25 and inf["cohens_d"] == pytest.approx(1.25 / pooled, abs=1e-3)
    assert inf["ci_low"] <= 1.25 <= inf["ci_high"]
    # odds ratio of both >= 4: 3/1 over 1/3 = 9, Woolf's interval around it
    o = r["wrong_minus_right"]["both_at_least_4_odds_ratio"]
    assert o["value"] == 9.0 and o["ci_low"] < 9.0 < o["ci_high"]
    assert r["wrong_minus_right"]["max_informativeness_ratio"] is None  # no right critique at 5
    assert cq.odds_ratio(4, 4, 0, 4)["value"] == pytest.approx((4.5 / 0.5) / (0.5 / 4.5))  # Haldane's 0.5


def test_the_stage_runs_on_the_reference_judge_and_resumes(tmp_path, raw_params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = P.apply_overrides(raw_params, {"student.model": "org/x", "teacher.model": "org/x",
                                         "critique_quality.backend": "reference", "critique_quality.rows": 8,
                                         "critique_quality.batch_size": 3})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    write_jsonl(tmp_path / "critiques.jsonl", _rows(6, 6))
    result = cq.run("params.yaml", "critiques.jsonl", "out", "m.json")
    assert result["status"] == "done" and result["judged"] == 8 and result["unparsed"] == {"wrong": 0, "right": 0}
    # the reference judge: long critiques citing the answer's numbers (the wrong answers') score high
    assert result["by_label"]["wrong"]["informativeness"]["mean"] == 5.0
    assert result["by_label"]["right"]["informativeness"]["mean"] == 1.0
    assert read_json("m.json")["rubric"] == "critique-rubric-v1" and len(list(read_jsonl("out/scores.jsonl"))) == 8
    again = cq.run("params.yaml", "critiques.jsonl", "out", "m.json")
    assert again["throughput"]["shards_resumed"] == 3 and again["by_label"] == result["by_label"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(P.apply_overrides(raw, {"critique_quality.rows": 0})))
    assert cq.run("params.yaml", "critiques.jsonl", "out", "m.json")["status"].startswith("off")


@pytest.mark.parametrize("over, match", [
    ({"critique_quality.rows": 1}, r"'critique_quality.rows' is 1"),
    ({"critique_quality.rubric_file": "nope.yaml"}, r"'critique_quality.rubric_file' is nope.yaml"),
    ({"critique_quality.model": {}}, r"'critique_quality.model' is an empty mapping"),
    ({"critique_quality.model": {"model": "models/missing"}}, r"'critique_quality.model.model' points to 'models/missing'"),
])
def test_params_errors_name_the_key(raw_params, over, match):
    with pytest.raises(P.ParamsError, match=match):
        P.from_dict(P.apply_overrides(raw_params, over), REPO / "dvc.yaml")


def test_the_judge_is_the_teacher_but_for_the_keys_it_sets(raw_params):
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml")
    assert P.role_model(cfg, "judge") is cfg.teacher and P.role_key(cfg, "judge") == "teacher"
    cfg = P.from_dict(P.apply_overrides(raw_params, {"critique_quality.model": {"model": "org/Judge", "api_key_env": "K"}}),
                      REPO / "dvc.yaml")
    judge = P.role_model(cfg, "judge")
    assert (judge.model, judge.api_key_env, judge.max_model_len) == ("org/Judge", "K", cfg.teacher.max_model_len)
    assert P.role_key(cfg, "judge") == "critique_quality.model"


def test_the_table_sets_each_label_beside_the_release():
    wrong = [(5, 5), (5, 4), (4, 4), (3, 5)]
    right = [(3, 4), (4, 4), (2, 3), (3, 3)]
    m = {**cq.report(_scored(wrong, right), resamples=200, seed=0), "judge": "j", "backend": "reference",
         "rubric": "critique-rubric-v1", "sample": {"usable": 8, "asked": 8, "shortfall": 0}}
    columns, rows = table.table(m, paper.load(), comparable=False)
    inf = rows["informativeness"]
    assert inf["wrong"].run == 4.25 and inf["wrong"].paper == 4.36 and inf["wrong"].paper_sd == 0.62
    assert inf["wrong"].text().startswith("4.25 ± 0.96 [") and inf["wrong"].text().endswith("/ ref. 4.36 ± 0.62")
    assert inf["effect"].paper == 1.04 and rows["both_at_least_4"]["effect"].run == 9.0
    assert rows["both_at_least_4"]["wrong_minus_right"].run == 50.0 and rows["both_at_least_4"]["wrong"].paper == 93.7
    assert rows["max_informativeness"]["effect"].text().startswith("not run") and rows["max_informativeness"]["effect"].paper == 10.1
    frame = table.to_frame(m, columns, rows)
    assert list(frame.columns)[1] == "Wrong answer (n=4)" and "unparsed" in table.caption({**m, "errors": 0, "judged": 8})
