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

Few-shot (`eval.num_shots`, benchmark -> count; the release's base run: math/minerva_math/gsm8k 4,
theoremqa 5, the others 0): the harness's demonstrations, harness_examples.json (from Qwen2.5-Math's
evaluation/examples.py, MIT, cited in the file), each rendered with the prompt type's template and
joined by its splitter ("\n\n\n" for cot) before the question, as `construct_prompt` does. The
harness maps MATH-500, AMC23 and AIME to the `math` demonstrations and Minerva to `minerva_math`; it
has none for TheoremQA in the published examples.py, so a TheoremQA shot count is refused.
Multiple-choice benchmarks (GPQA, MMLU-Pro) keep our prompt: the release evaluates them with other
scripts (MMLU-Pro's 5-shot CoT; GPQA's run_open.py, which it does not ship).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

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


# each template's output part is "{output}"; the splitter between demonstrations (utils.py)
SPLITTERS = {"llama3-math-cot": "\n\n", "qwen25-math-cot": "\n\n", "cot": "\n\n\n"}
# our benchmark -> the harness's demonstration set (utils.py load_prompt)
EXAMPLE_SETS = {"gsm8k": "gsm8k", "math": "math", "math500": "math", "amc23": "math", "aime24": "math",
                "aime25": "math", "minerva": "minerva_math"}


@cache
def examples() -> dict[str, list[list[str]]]:
    return json.loads((Path(__file__).with_name("harness_examples.json")).read_text(encoding="utf-8"))["examples"]


def demonstrations(benchmark: str, shots: int) -> list[list[str]]:
    """The first `shots` (question, answer) demonstrations the harness gives `benchmark`."""
    if shots == 0:
        return []
    name = EXAMPLE_SETS.get(benchmark)
    if name is None or len(examples()[name]) < shots:
        have = 0 if name is None else len(examples()[name])
        raise ValueError(f"eval.num_shots.{benchmark} = {shots}: the harness's examples.py has {have} "
                         f"demonstrations for it")
    return examples()[name][:shots]


def render(prompt_type: str, question: str, benchmark: str = "", shots: int = 0) -> str:
    """The prompt text the harness gives vLLM for `question`, with `shots` demonstrations."""
    template = TEMPLATES[prompt_type]
    demos = demonstrations(benchmark, shots)
    if demos and prompt_type == "qwen25-math-cot":  # the harness puts every demonstration in one turn
        body = SPLITTERS[prompt_type].join([q + "\n" + a for q, a in demos]) + SPLITTERS[prompt_type] + question
        return template.replace("{input}", body).strip(" ")
    context = template.replace("{input}", question)
    parts = [template.replace("{input}", q) + a for q, a in demos]
    return SPLITTERS[prompt_type].join([*parts, context]).strip(" ")


def stop_words(prompt_type: str) -> tuple[str, ...]:
    """The harness's stop words for a prompt type, the type's own first: a served model gets only
    the first few (cgd/generation/vllm_client.py), and a few-shot base model's next "Question:" is
    the one that stops it early most often. The text is cut at whichever comes first, as vLLM does."""
    return STOP_BY_TYPE.get(prompt_type, ()) + STOP_WORDS
