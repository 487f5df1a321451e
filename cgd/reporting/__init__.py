"""Stage 07: the paper's tables and figures from what the pipeline and its ablation points wrote.

build (the stage, one call per paper item, each adding its INDEX.md entry), tables (cells beside the
paper's numbers from paper), appendix_c (Tables 9-11), figures (one colour per method), points
(ablation points read back), flaw_source (the flaw-source table), critique_content (the revised
paper's critique-content table), index (figures/INDEX.md).

May import: every layer before it (runtime, grading, data, config, generation, distill, training,
evaluation, experiments).
"""
