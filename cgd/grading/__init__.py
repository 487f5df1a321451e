"""Reading answers out of text and judging them: gold answers from reference solutions (answers),
the final answer an output commits to (commitment), a critique's conclusion (labels), our grading
rule per benchmark (rules), the authors' rule (harness), and the one judge every stage calls
(judge).

May import: cgd.runtime.
"""
