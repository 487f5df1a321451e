"""Stage 05: the five methods' training records (records) and TRL's SFTTrainer with a
completion-only loss (train).

May import: cgd.runtime, cgd.config, cgd.generation (chat layout), cgd.distill (prompts, status).
"""
