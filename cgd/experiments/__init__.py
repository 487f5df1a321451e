"""Ablations and sweeps: chains of numbered notebooks run once per grid point (sweeps) and the
diagnostic row set built through stages 01-04 (diagnostic_set). Reading their results back is
cgd.reporting's.

May import: runtime, grading, data, config, generation, distill, training, evaluation.
"""
