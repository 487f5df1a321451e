"""Data in: the training pools (sampling: stage 01 and the WebInstruct-CFT rows), the evaluation benchmarks
(benchmarks: the registry with each set's loader, title, group and size), hub reads at pinned
revisions (hub), the embedded demo assets (assets), and n-gram decontamination (decontam).

May import: cgd.runtime, cgd.grading (sampling names cgd.config's DataConfig only as a type).
"""
