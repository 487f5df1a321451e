"""How the pipeline is launched: `make repro`'s driver (repro), which runs `dvc repro` with warm
kernels and times each stage, and the Slurm batch scripts of a profile (slurm). No stage runs this
code, so no stage depends on it.

May import: cgd.runtime, cgd.config, cgd.rehearsal.
"""
