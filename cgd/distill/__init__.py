"""The critique-augmented dataset, stages 02-04 (paper Section 3.1, Algorithm 1): the three prompts
(prompts), each stage's row builder, report and the incorrect/correct mixture (augment), and the
row status vocabulary (status).

May import: cgd.runtime, cgd.config, cgd.grading, cgd.generation.
"""
