"""Rehearsing a paper profile on this machine (rehearse): the profile's overlay with small sizes,
stand-in models in the real shape (standins), the fixtures as a local hub mirror (mirror) and
lm-eval tasks from local files (lmeval_local), the failed generations a finished rehearsal's
outputs hold (outcome); the paper profiles set against the paper and the
authors' release (fidelity, docs/fidelity.md).

May import: any cgd package but cgd.launch.
"""
