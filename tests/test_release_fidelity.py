"""The authors' release, setting for setting (issue 40): prompts, record layout, evaluation prompts,
the release's WebInstructSub reader and mixture rule. The fidelity table's claims are checked in
tests/test_fidelity_table.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cgd import config as P
from cgd.config import RefineConfig
from cgd.data import sampling as data
from cgd.distill import augment, authors_prompts, prompts
from cgd.evaluation import evaluate, harness_prompts
from cgd.generation.base import Completion, Request, cut_at_stop, prompt_token_ids
from cgd.training import records

REPO = Path(__file__).resolve().parents[1]
ROW = {"id": "r1", "question": "What is 2+3?", "student_answer": "It is 6.", "critique": "2+3 is 5.\nConclusion: wrong",
       "refined_answer": "2+3 = 5, so the answer is \\boxed{5}.", "reference_solution": "5", "status": "ok",
       "in_mixture": True}

# The released chat turns, written out here by hand from src/cgd_pipeline.py (PromptFormatter) so a
# change to authors_prompts.py cannot pass by changing both sides.
RELEASED_CRITIQUE_SYSTEM = (
    "You are a knowledgeable science and mathematics expert. A student has attempted to answer the following "
    "question. You are provided with the student's answer. Review the student's answer carefully, identify any "
    "inaccuracies, missing logical steps, or unclear explanations. Provide a detailed critique and then end with "
    "a line exactly in the format: 'Conclusion: right' or 'Conclusion: wrong'.")
RELEASED_REFINE_SYSTEM = (
    "You are a knowledgeable science expert. Based on the student's initial answer and your critique, write an "
    "improved, comprehensive answer that corrects inaccuracies and fills missing steps. Ensure the final answer "
    "is clear, accurate, and complete.")


def test_authors_prompts_render_the_released_chat_turns():
    q, a, c = ROW["question"], ROW["student_answer"], ROW["critique"]
    assert prompts.load("rollout", prompt_set="authors").render(question=q) == [{"role": "user", "content": q}]
    assert prompts.load("critique", prompt_set="authors").render(question=q, student_answer=a) == [
        {"role": "system", "content": RELEASED_CRITIQUE_SYSTEM},
        {"role": "user", "content": f"Question: {q}\n\nStudent's Answer: {a}"}]
    assert prompts.load("refine", prompt_set="authors").render(question=q, student_answer=a, critique=c) == [
        {"role": "system", "content": RELEASED_REFINE_SYSTEM},
        {"role": "user", "content": f"Question: {q}\n\nStudent's Initial Answer: {a}\n\nCritique: {c}"}]
    assert prompts.load("critique", prompt_set="authors").version == "critique-authors-v1"
    with pytest.raises(ValueError, match="no conclusion_followup"):
        prompts.load("conclusion_followup", prompt_set="authors")


def test_ours_keeps_its_rendering():
    """Our set renders as before the sets existed (the demo's fingerprints stay valid)."""
    assert prompts.load("rollout").render(question="Q") == prompts.student_messages("Q")
    assert prompts.load("critique").render(question="Q", student_answer="A")[0]["role"] == "user"
    assert len(prompts.load("refine").render(question="Q", student_answer="A", critique="C")) == 1


def test_prompt_file_with_a_system_turn(tmp_path):
    f = tmp_path / "critique.yaml"
    f.write_text("system: Be terse.\nuser: \"Q: {question}\\nA: {student_answer}\"\n")
    p = prompts.load("critique", str(f))
    assert p.render(question="x", student_answer="y") == [{"role": "system", "content": "Be terse."},
                                                         {"role": "user", "content": "Q: x\nA: y"}]
    assert p.version.startswith("custom:")
    txt = tmp_path / "rollout.txt"
    txt.write_text("Solve: {question}")
    assert prompts.load("rollout", str(txt)).render(question="x")[0] == {
        "role": "system", "content": prompts.STUDENT_SYSTEM["math"]}  # a text file keeps the stage's system turn
    bad = tmp_path / "bad.yaml"
    bad.write_text("user: '{question}'\nassistant: no\n")
    with pytest.raises(ValueError, match="mapping with a `user` template"):
        prompts.load("rollout", str(bad))


def _llama_factory_alpaca(example: dict) -> dict:
    """LLaMA-Factory's AlpacaDatasetConverter (src/llamafactory/data/converter.py) for a triple with no
    history, system or tools column, restated: the non-empty of instruction and input, joined by "\\n",
    as one user turn; the output as the assistant turn; system ""."""
    query = [example[k] for k in ("instruction", "input") if example[k]]
    return {"_prompt": [{"role": "user", "content": "\n".join(query)}],
            "_response": [{"role": "assistant", "content": example["output"]}], "_system": ""}


def test_alpaca_layout_renders_as_llama_factory_converts_the_release_triple():
    # the triple the release's refine step writes (run_pipeline_step, step refine)
    triple = {"instruction": authors_prompts.RECORD_INSTRUCTION,
              "input": (f"Question: {ROW['question']}\n\nStudent's Initial Answer: {ROW['student_answer']}\n\n"
                        f"Critique: {ROW['critique']}"),
              "output": ROW["refined_answer"]}
    converted = _llama_factory_alpaca(triple)
    rec = records.cgd(ROW, records.templates(record_layout="alpaca"))
    assert rec["prompt"] == converted["_prompt"]  # no system turn: the converter's _system is ""
    assert rec["completion"] == converted["_response"]
    assert "the teacher's critique" in rec["prompt"][0]["content"]
    # appendix_d: the input alone
    assert records.cgd(ROW, records.templates())["prompt"] == [{"role": "user", "content": triple["input"]}]
    # CGD w/o critique under alpaca: the same instruction, the critique block gone
    no_crit = records.cgd_no_critique(ROW, records.templates(record_layout="alpaca"))["prompt"][0]["content"]
    assert no_crit.startswith(authors_prompts.RECORD_INSTRUCTION + "\n") and "Critique:" not in no_crit


def test_alpaca_record_renders_through_a_chat_template(tiny_model):
    from transformers import AutoTokenizer

    from cgd.generation import chat
    tok = chat.prepare(AutoTokenizer.from_pretrained(tiny_model))
    rec = records.cgd(ROW, records.templates(record_layout="alpaca"))
    text = tok.apply_chat_template(rec["prompt"] + rec["completion"], tokenize=False)
    assert authors_prompts.RECORD_INSTRUCTION + "\nQuestion: What is 2+3?" in text
    prompt_ids, full_ids = records.token_ids(rec, tok)
    assert full_ids[:len(prompt_ids)] == prompt_ids  # the completion-only mask still splits at the prompt


def test_record_layout_is_validated(raw_params):
    raw_params["train"]["record_layout"] = "sharegpt"
    with pytest.raises(P.ParamsError, match="train.record_layout"):
        P.from_dict(raw_params, REPO / "dvc.yaml")


def test_harness_prompt_types_render_as_the_release():
    assert harness_prompts.render("llama3-math-cot", "What is 1+1?") == (
        "<|start_header_id|>system<|end_header_id|>\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|eot_id|>\n<|start_header_id|>user<|end_header_id|>\nWhat is 1+1?<|eot_id|>\n"
        "<|start_header_id|>assistant<|end_header_id|>\n")
    assert harness_prompts.render("cot", "What is 1+1?") == "Question: What is 1+1?\nAnswer:"  # strip(" ")
    assert "\n\nQuestion:" in harness_prompts.stop_words("cot")
    assert "\n\nQuestion:" not in harness_prompts.stop_words("qwen25-math-cot")
    assert harness_prompts.render("qwen25-math-cot", "{x}").count("{x}") == 1  # braces in a question survive


def test_eval_request_uses_raw_text_for_math_and_ours_for_choice():
    from cgd.data.benchmarks import Problem
    math = Problem("math500", "m1", "What is 1+1?", "2", "math")
    choice = Problem("gpqa", "g1", "Pick one.\nA. x\nB. y", "A", "choice", 2)
    r = evaluate.request("m1", math, "llama3-math-cot")
    assert r.prompt.startswith("<|start_header_id|>system") and "[END]" in r.stop
    assert evaluate.request("g1", choice, "llama3-math-cot").prompt is None
    assert evaluate.request("m1", math, "ours").prompt is None


def test_raw_prompt_tokens_and_stop_cut(tiny_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    r = Request("a", [], prompt="Question: 1+1?\nAnswer:")
    assert prompt_token_ids(tok, r) == tok("Question: 1+1?\nAnswer:")["input_ids"]
    assert cut_at_stop("2\n\nQuestion: next", ("\n\nQuestion:", "[END]")) == ("2", True)
    assert cut_at_stop("2", ("[END]",)) == ("2", False)


def test_openai_backend_with_a_raw_prompt_is_refused(raw_params):
    raw_params["eval"]["prompt_type"] = "llama3-math-cot"
    raw_params["eval"]["generation"]["backend"] = "openai"
    with pytest.raises(P.ParamsError, match="eval.prompt_type"):
        P.from_dict(raw_params, REPO / "dvc.yaml")


def test_webinstruct_conversations_read_the_release_way(raw_params, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    rows = json.loads((REPO / "tests/fixtures/webinstruct_conversations_rows.json").read_text())
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw_params["data"].update(source="webinstruct_conversations", hub_id=str(folder), require_final_answer=False,
                              selection="first")
    cfg = P.from_dict(raw_params, REPO / "dvc.yaml").data
    report = data.SampleReport("webinstruct_conversations")
    index = data.build_index(["gsm8k"], 8)
    pool, _ = data.clean_pool(data.load_pool(cfg), cfg, index, report)
    assert report.malformed_by_reason == {"malformed_conversations": 1}
    assert [e.question for e in pool] == [
        "What is the pH of a 0.01 M solution of hydrochloric acid?",   # cut at " Answer:", prefix removed
        "Differentiate f(x) = x^3 sin x with respect to x.",
        "How many moles are in 36 grams of water?"]                    # no "Question: " to remove
    assert pool[0].reference_solution.startswith("HCl is a strong acid")
    first = data.sample(pool, 2, 0, report, "first")
    assert [e.question for e in first] == [e.question for e in pool[:2]]
    raw_params["data"]["hub_id"] = None
    with pytest.raises(P.ParamsError, match="data.hub_id"):
        P.from_dict(raw_params, REPO / "dvc.yaml")


def _mixture_rows(n_wrong: int, n_right: int) -> list[dict]:
    return ([{"id": f"w{i}", "status": "ok", "conclusion": "wrong", "verifier_correct": False} for i in range(n_wrong)]
            + [{"id": f"r{i}", "status": "ok", "conclusion": "right", "verifier_correct": True} for i in range(n_right)])


@pytest.mark.parametrize("frac,incorrect", [(0.0, 0), (0.25, 1), (0.5, 2), (0.75, 4), (1.0, 5)])
def test_smaller_class_mixture_follows_the_release(raw_params, frac, incorrect):
    """filter_crit_ratios.py: every share at the size of the rarer label (here 5 wrong of 5 + 9),
    round(size * 0.25) right at 25/75 and round(size * 0.75) at 75/25, half and half at 50/50 with
    the odd row correct."""
    raw_params["refine"].update(incorrect_fraction=frac, mixture_total="smaller_class", label_source="critique")
    cfg: RefineConfig = P.from_dict(raw_params, REPO / "dvc.yaml").refine
    out, report = augment.select_mixture(_mixture_rows(5, 9), cfg, seed=0)
    assert report["in_mixture"] == 5
    assert report["in_mixture_incorrect"] == incorrect
    # the release: right = round(5 * share_right); wrong = the rest (50/50: 2 wrong + 2 right + 1 right)
    release_right = {0.0: 5, 0.25: round(5 * 0.75), 0.5: 3, 0.75: round(5 * 0.25), 1.0: 0}[frac]
    assert 5 - incorrect == release_right


def test_every_profile_validates_with_the_release_settings(tmp_path):
    from cgd.config import profiles
    for f in sorted((REPO / "configs/profiles").glob("*.yaml")):
        params = tmp_path / f"{f.stem}.yaml"
        shutil.copy(REPO / "params.yaml", params)
        profiles.apply_profile(f, params)
        P.load(params)


def test_diagnostics_render_the_layout_the_models_trained_on():
    from cgd.evaluation import diagnostics
    rows = [dict(ROW, id=f"r{i}") for i in range(3)]
    tagged = diagnostics.diagnostic_rows(rows, 2, 0, "alpaca")
    assert {r["record_layout"] for r in tagged} == {"alpaca"}
    assert diagnostics.cgd_messages(tagged[0])[0]["content"].startswith(authors_prompts.RECORD_INSTRUCTION + "\n")
    plain = diagnostics.diagnostic_rows(rows, 2, 0)
    assert diagnostics.cgd_messages(plain[0])[0]["content"].startswith("Question: ")


def test_few_shot_cot_renders_as_construct_prompt():
    """The harness's cot with demonstrations: each "Question: q\\nAnswer: a", joined by "\\n\\n\\n", then the
    question, spaces stripped at both ends (eval/evaluate_math/utils.py construct_prompt)."""
    demos = harness_prompts.demonstrations("math500", 2)
    text = harness_prompts.render("cot", "What is 1+1?", "math500", 2)
    assert text == (f"Question: {demos[0][0]}\nAnswer: {demos[0][1]}\n\n\n"
                    f"Question: {demos[1][0]}\nAnswer: {demos[1][1]}\n\n\nQuestion: What is 1+1?\nAnswer:")
    assert demos[0][0].startswith("Kevin Kangaroo")  # examples.py's first MATH demonstration
    assert harness_prompts.demonstrations("minerva", 4)[0] != harness_prompts.demonstrations("math", 4)[0]
    with pytest.raises(ValueError, match="eval.num_shots.theoremqa"):
        harness_prompts.demonstrations("theoremqa", 5)
    qwen = harness_prompts.render("qwen25-math-cot", "Q?", "gsm8k", 1)  # every demonstration in one user turn
    assert qwen.count("<|im_start|>user") == 1 and " The answer is 6.\n\nQ?<|im_end|>" in qwen


def test_num_shots_are_validated(raw_params):
    raw_params["eval"]["num_shots"] = {"gsm8k": 4}
    with pytest.raises(P.ParamsError, match="eval.num_shots.gsm8k"):  # ours is zero-shot chat
        P.from_dict(raw_params, REPO / "dvc.yaml")
    raw_params["eval"]["prompt_type"] = "cot"
    P.from_dict(raw_params, REPO / "dvc.yaml")
    raw_params["eval"]["num_shots"] = {"aime24": 4}
    with pytest.raises(P.ParamsError, match="eval.num_shots.aime24"):
        P.from_dict(raw_params, REPO / "dvc.yaml")


def test_answer_after_keeps_s1_1_s_answer_section_as_the_release():
    c = Completion("think\nLet me work: 2+3=5.\nanswer\nAnswer: The result is \\boxed{5}.", "stop", 3, 20)
    cut = augment.answer_section(c, r"answer\s+Answer")
    assert cut.text == "The result is \\boxed{5}." and cut.completion_tokens == 20
    cut_off = Completion("think\nstill reasoning when the budget ran out", "length")
    assert augment.answer_section(cut_off, r"answer\s+Answer") is cut_off  # no marker: kept whole
    assert augment.answer_section(c, None) is c


def test_answer_after_is_validated(raw_params):
    raw_params["teacher"]["answer_after"] = "answer(("
    with pytest.raises(P.ParamsError, match="teacher.answer_after"):
        P.from_dict(raw_params, REPO / "dvc.yaml")
