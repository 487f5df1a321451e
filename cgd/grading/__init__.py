"""Reading answers out of text and judging them: gold answers from reference solutions (answers),
a critique's conclusion and the math judge used by the data stages (labels), and each benchmark's
grading rules (rules).

May import: cgd.runtime.
"""
