"""Stage 06 and 08: benchmark evaluation (evaluate), statistics (stats), the grading round trip
(gradecheck), the general-capability suites through lm-eval (general) and the Appendix C probes
(diagnostics).

May import: cgd.runtime, cgd.config, cgd.data, cgd.grading, cgd.generation, cgd.distill, cgd.training.
"""
