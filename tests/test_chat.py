"""One prompt layout per model: base models get the plain-text layout, templates that refuse a
system turn get it folded in, and training and evaluation render the same tokens either way."""

import json
import shutil

import pytest
from transformers import AutoTokenizer

import cgd.generation.base as generation_base
from cgd.distill import prompts
from cgd.generation import chat
from cgd.rehearsal.standins import (
    MIXTRAL_TEMPLATE,  # Mixtral-8x7B-Instruct-v0.1's, as its tokenizer_config.json ships it
)
from cgd.training import records

ROW = {"id": "r1", "question": "Tom has 3 apples and buys 4 more. How many apples?", "status": "ok",
       "in_mixture": True, "reference_solution": "3 + 4 = 7", "student_answer": "3 + 4 = 8, so \\boxed{8}",
       "critique": "3 + 4 is 7.\n\nConclusion: wrong", "refined_answer": "3 + 4 = 7, so \\boxed{7}."}


def _copy(tiny_model, tmp_path, template: str | None):
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    if template is not None:
        (out / "chat_template.jinja").write_text(template)
    return out


def test_a_base_model_gets_the_plain_layout_in_training_and_evaluation(tiny_model, tmp_path):
    tok = chat.prepare(AutoTokenizer.from_pretrained(_copy(tiny_model, tmp_path, None)))
    assert tok.cgd_layout == "plain"
    messages = prompts.student_messages(ROW["question"])
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == f"{tok.bos_token or ''}{messages[0]['content']}\n\n{ROW['question']}\n\nAnswer:\n"
    # Evaluation and rollout encode the prompt as the SFT record's prompt is encoded for training,
    # and the trained completion ends with EOS, so the model learns where to stop.
    record = records.sft(ROW, records.templates())
    prompt_ids, full_ids = records.token_ids(record, tok)
    assert generation_base.chat_token_ids(tok, messages) == prompt_ids == full_ids[:len(prompt_ids)]
    assert full_ids[-1] == tok.eos_token_id
    assert tok.decode(full_ids[len(prompt_ids):-1]) == record["completion"][0]["content"]


def test_a_template_without_a_system_role_gets_it_folded_into_the_user_turn(tiny_model, tmp_path):
    raw = AutoTokenizer.from_pretrained(_copy(tiny_model, tmp_path, MIXTRAL_TEMPLATE))
    with pytest.raises(Exception, match="Conversation roles must alternate"):
        raw.apply_chat_template(prompts.student_messages("q"), tokenize=False)
    tok = chat.prepare(raw)
    assert tok.cgd_layout == "folded"
    system = prompts.student_messages("q")[0]["content"]
    text = tok.apply_chat_template(prompts.student_messages("What is 2 + 2?"), tokenize=False)
    assert text == f"{tok.bos_token or ''}[INST] {system}\n\nWhat is 2 + 2? [/INST]"
    # CGD's record (one user turn) and a multi-turn chat render as Mixtral's own template does.
    record = records.cgd(ROW, records.templates())
    assert tok.apply_chat_template(record["prompt"], tokenize=False) == raw.apply_chat_template(
        record["prompt"], tokenize=False)
    # A trained model saves the folded template; loaded again it needs no folding.
    tok.save_pretrained(tmp_path / "trained")
    again = chat.prepare(AutoTokenizer.from_pretrained(tmp_path / "trained"))
    assert again.cgd_layout == "chat" and again.apply_chat_template(
        prompts.student_messages("What is 2 + 2?"), tokenize=False) == text


def test_a_chat_template_with_a_system_role_is_left_alone(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    template = tok.chat_template
    assert chat.prepare(tok).cgd_layout == "chat" and tok.chat_template == template


@pytest.mark.slow
def test_trl_trains_a_base_model_on_the_plain_layout_and_saves_it(tiny_model, tmp_path):
    """The base student trains through TRL with the plain layout (completion-only: the loss covers
    the answer and its EOS), and the trained folder carries the template evaluation will use."""
    from cgd.runtime.io import write_jsonl
    from cgd.training import train
    from tests.test_train import ROWS, _cfg

    base = _copy(tiny_model, tmp_path, None)
    cfg = _cfg(base, per_device_batch_size=2, global_batch_size=2, epochs=1)
    write_jsonl(tmp_path / "rows.jsonl", ROWS)
    m = train.train(cfg, "sft", 0, str(tmp_path / "rows.jsonl"), str(tmp_path / "out"), str(tmp_path / "live"),
                    str(tmp_path / "ckpt"))
    assert m["records"] == 6 and m["loss_tokens"] > 0
    trained = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert trained.chat_template == chat.PLAIN_TEMPLATE
