"""How long a response reasons: its words and its steps (the release's AIME24 table reports both,
477 → 2,110 words and 16.4 → 49.5 steps, base → CGD, without saying how it counted them).

Our definitions, stated so a number can be checked by hand:

- a **word** is a whitespace-separated token holding at least one letter or digit (`$x^2$`, `12,`
  and `don't` are words; a lone `=`, `-` or `$$` is not);
- a **step** is a line holding at least one word. Models write one step of a derivation per line
  or paragraph ("## Step 1: …", a numbered item, a display equation), and blank lines, fences and
  lines of bare symbols are layout, not steps. A paragraph wrapped over two lines counts twice, so
  compare steps between models of one family rather than across families.

Counted over the whole response as generated, thinking included (s1.1's think block is reasoning).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]", re.UNICODE)  # a letter or a digit


def words(text: str) -> int:
    return sum(1 for token in (text or "").split() if _WORD.search(token))


def steps(text: str) -> int:
    return sum(1 for line in (text or "").splitlines() if words(line))
