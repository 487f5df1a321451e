"""How the pipeline is launched here: `make repro`'s driver (repro), which runs `dvc repro` with
warm kernels and times each stage. No stage runs this code, so no stage depends on it.

May import: cgd.runtime.
"""
