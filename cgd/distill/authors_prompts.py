"""The authors' released prompts, reproduced exactly as experimental inputs (prompt_set: authors).

Source: CapitalOne-Research/Critique-Guided-Distillation (MIT), src/cgd_pipeline.py at commit
2529178ca6268cb7dcf8f5b1bdae970c1acf7f29, class `PromptFormatter`:

- probe (our rollout), `for_probing`: the question alone as the user turn, no system turn;
- critique, `for_critique`: `task_instruction` as the system turn, the user turn
  `Question: …\\n\\nStudent's Answer: …`;
- refine, `for_refinement`: its own `task_instruction` as the system turn, the user turn
  `Question: …\\n\\nStudent's Initial Answer: …\\n\\nCritique: …`;
- the training record, `run_pipeline_step` (step refine): an Alpaca triple whose `instruction` is
  RECORD_INSTRUCTION (the refine instruction reworded to "the teacher's critique") and whose `input`
  is the refine user turn (cgd/training/records.py lays it out with `train.record_layout: alpaca`).

The release has no conclusion follow-up; our `conclusion_followup` stays available beside this set.
Sampling, lengths and stop tokens of the same release are params (the paper profiles), and
docs/fidelity.md lists every setting against the release.
"""

from __future__ import annotations

VERSION = "v1"
SOURCE = ("CapitalOne-Research/Critique-Guided-Distillation@2529178ca6268cb7dcf8f5b1bdae970c1acf7f29:"
          "src/cgd_pipeline.py")

CRITIQUE_SYSTEM = (
    "You are a knowledgeable science and mathematics expert. A student has attempted to answer "
    "the following question. You are provided with the student's answer. "
    "Review the student's answer carefully, identify any inaccuracies, missing logical steps, or unclear explanations. "
    "Provide a detailed critique and then end with a line exactly in the format: 'Conclusion: right' or 'Conclusion: wrong'."
)
REFINE_SYSTEM = (
    "You are a knowledgeable science expert. Based on the student's initial answer and your critique, "
    "write an improved, comprehensive answer that corrects inaccuracies and fills missing steps. "
    "Ensure the final answer is clear, accurate, and complete."
)
RECORD_INSTRUCTION = (
    "You are a knowledgeable science expert. Based on the student's initial answer and the teacher's critique, "
    "write an improved, comprehensive answer that corrects inaccuracies and fills missing steps. "
    "Ensure the final answer is clear, accurate, and complete."
)

# User turns as format templates over the stage's fields (literal braces would be doubled; there are none).
USER = {
    "rollout": "{question}",
    "critique": "Question: {question}\n\nStudent's Answer: {student_answer}",
    "refine": "Question: {question}\n\nStudent's Initial Answer: {student_answer}\n\nCritique: {critique}",
}
SYSTEM = {"critique": CRITIQUE_SYSTEM, "refine": REFINE_SYSTEM}  # the probe has none
