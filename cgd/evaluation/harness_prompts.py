"""The release's evaluation prompts (`eval.prompt_type`), rendered as raw text as its harness renders them.

Source: CapitalOne-Research/Critique-Guided-Distillation@10f651cbe7ab06ab7b21ea84ff17a4cb6fdb004f,
eval/evaluate_math: `utils.py` PROMPT_TEMPLATES (a copy of Qwen2.5-Math's evaluation harness with a
`llama3-math-cot` type added) and `math_eval.py` (stop words). Which type each model family gets
comes from the release's scripts (eval/evaluate_math/scripts/): `evaluate_llama_chat.sh` runs
Llama chat models with llama3-math-cot and `--max_tokens_per_call 8192`; `evaluate_qwen.sh` Qwen
models with qwen25-math-cot and 16384; `evaluate_llama_base.sh` base models with cot (8192, the
default) and few-shot demonstrations (math/minerva/gsm8k 4, theoremqa 5; see below).

The harness formats the template with the question, strips spaces at both ends (`construct_prompt`,
"important!") and gives vLLM the text, which adds the tokenizer's BOS; the chat template is not
applied (`--apply_chat_template` is commented out in the scripts). So llama3-math-cot is *not*
Llama 3.1's own chat template: one newline after each header instead of two, and no
"Cutting Knowledge Date" system block. Generation stops at the harness's stop words, each left out
of the text.

Divergence: `cot` is rendered zero-shot here. The release's base-model run prepends the harness's
few-shot demonstrations (Qwen2.5-Math evaluation/examples.py), which this project does not ship;
docs/fidelity.md counts it among the settings that still differ.
Multiple-choice benchmarks (GPQA, MMLU-Pro) keep our prompt: the release evaluates them with other
scripts (MMLU-Pro's 5-shot CoT; GPQA's run_open.py, which it does not ship).
"""

from __future__ import annotations

TEMPLATES = {
    "llama3-math-cot": (
        "<|start_header_id|>system<|end_header_id|>\nPlease reason step by step, and put your final answer "
        "within \\boxed{}.<|eot_id|>\n<|start_header_id|>user<|end_header_id|>\n{input}<|eot_id|>\n"
        "<|start_header_id|>assistant<|end_header_id|>\n"),
    "qwen25-math-cot": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}."
        "<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"),
    "cot": "Question: {input}\nAnswer: ",
}
# math_eval.py's stop words for every prompt type, then the ones it adds by type
STOP_WORDS = ("</s>", "<|im_end|>", "<|endoftext|>", "(END)", "\\[END\\]", "**END**", "[END]", "</answer>",
              "<|end_of_solution|>")
STOP_BY_TYPE = {"cot": ("\n\nQuestion:",)}
# the release's per-family generation limit (--max_tokens_per_call; math_eval.py's default 8192)
MAX_TOKENS = {"llama3-math-cot": 8192, "qwen25-math-cot": 16384, "cot": 8192}


def render(prompt_type: str, question: str) -> str:
    """The prompt text the harness gives vLLM for `question` (zero-shot)."""
    return TEMPLATES[prompt_type].replace("{input}", question).strip(" ")


def stop_words(prompt_type: str) -> tuple[str, ...]:
    return STOP_WORDS + STOP_BY_TYPE.get(prompt_type, ())
