"""The critique-augmented dataset, stages 02-04 (paper Section 3.1, Algorithm 1): the three prompts
(prompts), each stage's row builder, report and the incorrect/correct mixture (augment), the row
status vocabulary (status), and the critique-content ablation's rows with their critiques replaced
(critique_content).

May import: cgd.runtime, cgd.config, cgd.grading, cgd.generation.
"""
