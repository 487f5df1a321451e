"""The in-repo tiny model loads like a hub model, speaks ChatML, and generates."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_tiny_model_round_trip(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "llama" and model.num_parameters() < 200_000
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    assert tok.decode(tok("12 * 7 = 84")["input_ids"]) == "12 * 7 = 84"
