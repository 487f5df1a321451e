"""The fidelity table (docs/fidelity.md): every setting of the paper profiles against the paper's
text and the authors' release, generated from the profiles so it cannot go stale.

Each `Setting` names what the paper says, what the release does (file and symbol, at the commits
below), the params key that holds it here and the value the release implies for each profile. The
table reads each profile's value from configs/profiles/ over params.yaml and marks the setting:

  match                 every profile holds the release's value;
  differs, with reason  a profile departs and the setting says why (`reasons`);
  differs still         a profile departs with no stated reason, or the code has no such option yet.

`python -m cgd fidelity` writes docs/fidelity.md; tests/test_fidelity_table.py fails when the file
and the profiles disagree, or when a setting marked match no longer holds.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cgd.config import keys, profiles

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("llama8b-webinstruct", "llama8b-metamathqa", "llama8b-base-webinstruct", "s1-webinstruct",
            "mixtral-webinstruct", "olmo-webinstruct", "qwen25math7b-webinstruct")
RELEASE = "CapitalOne-Research/Critique-Guided-Distillation"
COMMITS = {"src": "2529178ca6268cb7dcf8f5b1bdae970c1acf7f29", "eval": "10f651cbe7ab06ab7b21ea84ff17a4cb6fdb004f"}
ALL = "*"
MATCH, REASON, STILL = "match", "differs, with reason", "differs still"


@dataclass(frozen=True)
class Setting:
    name: str
    paper: str
    release: str  # what the release does, with file and symbol
    key: str | None  # the params key here; None: a code path (described in `ours`)
    expected: Any = None  # the release's value: one for every profile, or {profile: value}
    reasons: dict[str, str] = field(default_factory=dict)  # profile (or ALL) -> why it departs
    ours: str = ""  # key None: what this project does
    status: str = ""  # key None: its status, stated

    def want(self, profile: str) -> Any:
        if isinstance(self.expected, dict):
            return self.expected.get(profile, self.expected.get(ALL))
        return self.expected

    def reason(self, profile: str) -> str | None:
        return self.reasons.get(profile, self.reasons.get(ALL))


S = Setting
NP = "not in the paper"
SETTINGS: list[Setting] = [
    # ---- probe (stage 02)
    S("probe prompt", NP, "the question alone as the user turn, no system turn (src/cgd_pipeline.py "
      "`PromptFormatter.for_probing`)", "rollout.prompt_set", "authors"),
    S("probe temperature", NP, "0.0 (`VLLMClient.generate`, one SamplingParams for every step)",
      "rollout.temperature", 0.0),
    S("probe top_p", NP, "0.95 (`VLLMClient.generate`; greedy, so without effect)", "rollout.top_p", 0.95),
    S("probe max tokens", NP, "max_tokens 16384 (`VLLMClient.generate`), within the student's max_model_len",
      "rollout.max_new_tokens", 16384),
    S("student context", NP, "MAX_STUDENT_LEN 8192 (src/run_cgd_pipeline.sh)", "student.max_model_len", 8192,
      {"s1-webinstruct": "s1.1-3B reasons for thousands of tokens before its answer; 32768 is its context",
       "olmo-webinstruct": "OLMo-2-1124-7B has 4096 positions",
       "qwen25math7b-webinstruct": "Qwen2.5-Math-7B has 4096 positions (RoPE theta 1e4)"}),
    S("vLLM batch", NP, "max_num_seqs 256 (`VLLMClient.__init__`)", "student.max_num_seqs", 256),
    S("vLLM dtype", NP, "bfloat16 (`VLLMClient.__init__`)", "student.dtype", "bfloat16"),
    S("vLLM memory", NP, "gpu_memory_utilization 0.9 (`VLLMClient.__init__`)", "student.gpu_memory_utilization", 0.9),
    S("student parallelism", NP, "one engine, tensor parallel 8 (TP_SIZE, src/run_cgd_pipeline.sh)",
      "student.tensor_parallel_size", 8,
      {ALL: "data parallel replicas (student.data_parallel_size) fill the GPUs faster than TP 8 once the model "
            "fits; greedy outputs differ only by kernel numerics"}),
    S("stop tokens (data stages)", NP, "stop_token_ids: the tokenizer's EOS and 128009 <|eot_id|> "
      "(`VLLMClient.generate`)", None, ours="the model's generation_config EOS ids, which for Llama 3.x "
      "include 128009; vLLM stops on them by default", status=MATCH),
    S("s1.1 outputs", NP, "for s1.1 models every step keeps the text after the `answer\\s+Answer` marker "
      "(`PromptFormatter._parse_s1_1_response`, `run_pipeline_step`)", "teacher.answer_after",
      {ALL: None, "s1-webinstruct": "answer\\s+Answer", "qwen25math7b-webinstruct": "answer\\s+Answer"}),
    S("special tokens", NP, "vLLM's default: special tokens decoded out of the text (no skip_special_tokens "
      "given)", "student.skip_special_tokens", True),
    S("base-model prompt", NP, "no chat template: `Question: {user turn}\\n\\nAnswer:`, system turns dropped "
      "(`VLLMClient._to_prompt`)", None, ours="cgd/generation/chat.py PLAIN_TEMPLATE: the turns as plain "
      "text, `Answer:\\n` before the reply, the same layout in rollout, training and evaluation (the prompt's "
      "tokens a prefix of the record's, for the completion-only mask)", status=REASON),
    # ---- critique (stage 03) and refine (stage 04)
    S("critique prompt", "Appendix D shows a critique ending in a conclusion", "system turn `task_instruction` + "
      "user turn `Question: …\\n\\nStudent's Answer: …` (`PromptFormatter.for_critique`)",
      "critique.prompt_set", "authors"),
    S("critique sampling", NP, "temperature 0.0, top_p 0.95, max_tokens 16384 (`VLLMClient.generate`)",
      "critique.max_new_tokens", 16384),
    S("critique temperature", NP, "0.0", "critique.temperature", 0.0),
    S("teacher context", NP, "MAX_TEACHER_LEN 32768 (src/run_cgd_pipeline.sh)", "teacher.max_model_len", 32768),
    S("conclusion follow-up", NP, "none: a critique without `Conclusion:` is kept as written",
      "critique.conclusion_followup", False),
    S("refine prompt", "the refined answer is conditioned on (x, y', c)", "system turn `task_instruction` "
      "(\"… and your critique …\") + user turn `Question: …\\n\\nStudent's Initial Answer: …\\n\\nCritique: …` "
      "(`PromptFormatter.for_refinement`)", "refine.prompt_set", "authors"),
    S("refine sampling", NP, "temperature 0.0, top_p 0.95, max_tokens 16384", "refine.max_new_tokens", 16384),
    # ---- data
    S("training pool", "WebInstruct, 100k rows (MetaMathQA in App. B.1.1)", "a local WebInstructSub export "
      "(webinstructsub_chunk1.json / 000_WebInstructSub_filter_1_00179.jsonl, not published), question = "
      "`conversations[0]` up to \" Answer:\" (`DataHandler._process_webinstruct`)", "data.source", "webinstruct_conversations",
      {ALL: "the export is not published; the profiles read the hub's TIGER-Lab/WebInstructSub, and "
            "data.source webinstruct_conversations reads such an export the release's way",
       "llama8b-metamathqa": "Table 6's MetaMathQA setting; the release ships no MetaMathQA reader"}),
    S("row selection", "100k rows", "the first --num_samples rows of the file (`DataHandler.load_data`)",
      "data.selection", "first", {ALL: "a seeded random sample of the hub's rows: its file order is not the "
                                       "export's, so the first rows would be another set"}),
    S("training rows", "100,000", "NUM_SAMPLES 100000 (src/README.md; the script's default is 8, the README's "
      "example 25000)", "data.n_train", 100000),
    S("decontamination", NP, "none", "data.decontamination.ngram", None,
      {ALL: "8-gram decontamination against every evaluated benchmark keeps test problems out of training"}),
    # ---- training
    S("training record", "Appendix D: (x, y', c) -> ŷ", "an Alpaca triple: instruction = the refine "
      "instruction (\"… the teacher's critique …\"), input = the Appendix D layout, output = ŷ "
      "(`run_pipeline_step`, step refine), joined by LLaMA-Factory's `AlpacaDatasetConverter`",
      "train.record_layout", "alpaca"),
    S("trainer", "full fine-tuning", "LLaMA-Factory (README, Step 3); its config is not published", None,
      ours="TRL SFTTrainer, completion-only loss, DeepSpeed ZeRO-3 (the project's design card)", status=REASON),
    S("training chat template", NP, "LLaMA-Factory's template for the model (not published)", None,
      ours="the tokenizer's own chat template (Llama 3.1's adds its date system block)", status=REASON),
    S("packing", NP, "the run start_validate.sh selects from sits under a `packing/` folder "
      "(eval/scripts/start_validate.sh)", None, ours="no packing: padded micro-batches (padding-free batches "
      "are issue 42's)", status=STILL),
    S("learning rate", "1e-6 (Table 5)", "`…_1e6` in start_validate.sh's run name", "train.lr", 1.0e-6),
    S("global batch", "64 (Table 5)", "`64gbs_gradAcc4` in start_validate.sh's run name", "train.global_batch_size", 64),
    S("epochs", "1 (Table 5; Fig. 6 trains 3)", "`7epochs` in start_validate.sh's run name", "train.epochs", 1.0),
    S("max length", "8192 (Table 5)", "not published", "train.max_length", 8192,
      {"olmo-webinstruct": "OLMo-2-1124-7B has 4096 positions",
       "qwen25math7b-webinstruct": "Qwen2.5-Math-7B has 4096 positions"}),
    S("seeds", "mean over three seeds (App. A)", "math_eval.py --seed 0; training seeds not published",
      "train.seeds", [0, 1, 2]),
    # ---- checkpoint
    S("checkpoint", NP, "every checkpoint evaluated on MATH-500 and the best kept (eval/scripts/start_validate.sh, "
      "README: \"the selected MATH-500 validation set\")", "eval.checkpoint.select", "math500",
      {ALL: "the final model: selecting on MATH-500 selects on a reported test set. `math500` runs the "
            "authors' selection (every table then says \"selected on MATH-500 (a test set)\"), `validation` "
            "selects on held-out MATH training problems instead (train.snapshot_steps saves the candidates)"}),
    # ---- evaluation
    S("evaluation prompt", "zero-shot CoT", "prompt types of eval/evaluate_math/utils.py: llama3-math-cot "
      "(evaluate_llama_chat.sh), qwen25-math-cot (evaluate_qwen.sh), cot (evaluate_llama_base.sh)",
      "eval.prompt_type", {ALL: "llama3-math-cot", "llama8b-base-webinstruct": "cot", "s1-webinstruct": "qwen25-math-cot",
                           "qwen25math7b-webinstruct": "qwen25-math-cot"},
      {"mixtral-webinstruct": "the release has no Mistral prompt type; llama3-math-cot's markers are Llama's",
       "olmo-webinstruct": "the release has no OLMo prompt type; llama3-math-cot's markers are Llama's"}),
    S("evaluation max tokens", NP, "--max_tokens_per_call 8192 (Llama chat), 16384 (Qwen), 8192 (base, math_eval.py's default)",
      "eval.generation.max_new_tokens", {ALL: 8192, "s1-webinstruct": 16384, "qwen25math7b-webinstruct": 16384},
      {"olmo-webinstruct": "3072: the room under OLMo-2's 4096 positions"}),
    S("evaluation sampling", "greedy", "--temperature 0 --top_p 1 (the scripts)", "eval.generation.temperature", 0.0),
    S("evaluation stop words", NP, "math_eval.py's list (+ \"\\n\\nQuestion:\" for cot)", None,
      ours="cgd/evaluation/harness_prompts.py STOP_WORDS, sent as stop strings with every harness prompt",
      status=MATCH),
    S("base-model shots", NP, "math/minerva/gsm8k 4, theoremqa 5, the others 0 (evaluate_llama_base.sh "
      "NUM_SHOTS_ARG; demonstrations from the harness's examples.py)", "eval.num_shots",
      {ALL: {}, "llama8b-base-webinstruct": {"math500": 4, "minerva": 4}}),
    S("grader", NP, "the harness's parser and eval/evaluate_math/grader.py `math_equal`", "eval.grader", "harness"),
    S("GPQA", "GPQA (Diamond in the release README)", "5 shots, `run_open.py --form llama3` "
      "(eval/evaluate_gpqa/scripts/evaluate_gpqa.sh; run_open.py not published)", None,
      ours="zero-shot, our multiple-choice CoT prompt, answer letter in \\boxed{}", status=STILL),
    S("MMLU-Pro", NP, "5-shot CoT from the validation split per category after cot_prompt_lib/initial_prompt_1.txt "
      "(not published), Qwen chat markers, max_new_tokens 2048, prompts cut to 4096 tokens "
      "(eval/evaluate_mmlu-pro/evaluate_from_local.py, evaluate_chat.sh)", None,
      ours="zero-shot, our multiple-choice CoT prompt; the release's answer extraction as the harness grader",
      status=STILL),
    # ---- ablations
    S("mixture size", "25k rows per share (App. B.1.4)", "every share at the size of the rarer label "
      "(src/filter_crit_ratios.py `create_and_save_controlled_ratios`)", "ablations.mixture.total",
      {ALL: "smaller_class"},
      {ALL: "the paper states 25k rows (the profiles without the ablation inherit it); `smaller_class` runs the release's rule"}),
    S("mixture labels", "by the critique's conclusion", "`separate_samples_by_conclusion`: the input's last "
      "line, conclusion: right / wrong", "ablations.mixture.label_source", "critique"),
]


def profile_params(name: str, root: Path = ROOT) -> dict:
    """params.yaml with the profile laid over it, as `make profile NAME=…` writes it."""
    with tempfile.TemporaryDirectory(prefix="cgd-fidelity-") as tmp:
        params = Path(tmp) / "params.yaml"
        shutil.copy(root / "params.yaml", params)
        profiles.apply_profile(root / "configs" / "profiles" / f"{name}.yaml", params)
        return yaml.safe_load(params.read_text())


def _fmt(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def same(a: Any, b: Any) -> bool:
    """Equal, numbers by value (a rewritten params.yaml may hold 1e-06 as text, which YAML 1.1 reads as a string)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def evaluate(setting: Setting, values: dict[str, dict]) -> tuple[str, str, list[str]]:
    """(status, this project's column, the reasons given) for one setting over the profiles."""
    if setting.key is None:
        return setting.status, setting.ours, []
    got = {p: keys.lookup(values[p], setting.key) for p in PROFILES}
    status, reasons = MATCH, []
    for p in PROFILES:
        if same(got[p], setting.want(p)):
            continue
        why = setting.reason(p)
        if why is None:
            status = STILL
        else:
            status = REASON if status == MATCH else status
            if why not in reasons:
                reasons.append(why)
    by_value: dict[str, list[str]] = {}
    for p in PROFILES:
        by_value.setdefault(_fmt(got[p]), []).append(p)
    if len(by_value) == 1:
        ours = f"`{setting.key}: {next(iter(by_value))}` (all six)"
    else:
        ours = f"`{setting.key}`: " + "; ".join(f"{v} ({', '.join(ps)})" for v, ps in by_value.items())
    return status, ours, reasons


def table(root: Path = ROOT) -> tuple[str, dict[str, int]]:
    values = {p: profile_params(p, root) for p in PROFILES}
    rows, counts = [], {MATCH: 0, REASON: 0, STILL: 0}
    for s in SETTINGS:
        status, ours, reasons = evaluate(s, values)
        counts[status] += 1
        why = " ".join(reasons) if reasons else ("" if status == MATCH else "")
        rows.append(f"| {s.name} | {s.paper} | {s.release} | {ours} | {status}{': ' + why if why else ''} |")
    head = "| setting | paper | authors' release | this project (paper profiles) | status |\n| --- | --- | --- | --- | --- |"
    return head + "\n" + "\n".join(r.replace("\n", " ") for r in rows), counts


def render(root: Path = ROOT) -> str:
    body, counts = table(root)
    return f"""# Fidelity: the paper, the authors' release, this project

Generated by `python -m cgd fidelity` from cgd/rehearsal/fidelity.py and the six paper profiles
(configs/profiles/ over params.yaml); tests/test_fidelity_table.py fails when this file or a
profile drifts from it. Do not edit by hand.

The release is {RELEASE} (MIT): src/ at {COMMITS['src'][:10]}, eval/ at {COMMITS['eval'][:10]}.
"match": every profile holds the release's value. "differs, with reason": a profile departs, and the
reason follows. "differs still": no option here reproduces the release yet. The CPU demo (params.yaml)
is not a paper profile: it keeps its own sizes and sampling (docs/pipeline.md, "Prompts", for its prompts).

**{counts[MATCH]} match, {counts[REASON]} differ with a reason, {counts[STILL]} differ still** ({len(SETTINGS)} settings).

{body}
"""


def main(check: bool = False, root: Path = ROOT) -> int:
    out = root / "docs" / "fidelity.md"
    text = render(root)
    if check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is stale: run python -m cgd fidelity")
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0
