"""Critique-Guided Distillation (CGD): a notebook-first, DVC-reproducible reference implementation.

The package tree is the architecture. Layers, each importing only those before it:

    runtime      io, shards, progress, provenance, device, warm kernel      (infrastructure)
    grading      answers out of text, the judges                            (method)
    data         training pools, benchmarks, hub, decontamination           (method)
    config       params.yaml schema, loading, validation, methods, profiles
    generation   one interface, one file per backend, the vLLM server, the shard driver
    distill      stages 02-04: prompts, row builders, mixture
    training     stage 05: records and the trainer
    evaluation   stages 06 and 08: benchmarks scored, statistics, general suites, probes
    experiments  sweeps and ablations over the numbered notebooks
    reporting    stage 07: tables, figures and INDEX.md from what every stage and point wrote
    rehearsal    a paper profile end to end on this machine                 (infrastructure)
    launch       `make repro`'s driver                                      (infrastructure)

Each package's docstring says what it holds and what it may import; tests/test_layers.py checks it.
`python -m cgd COMMAND` (cgd/__main__.py) is the command line over all of them.
"""
