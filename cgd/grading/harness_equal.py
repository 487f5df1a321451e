"""The authors' equivalence test: the CGD release's eval/evaluate_math/grader.py `math_equal`, with
its defaults (percentages included, relative tolerance 1e-4, no inner timeout), behaviour reproduced
from the published file, quirks included: string match; two numbers equal after rounding both to one
decimal, or within rel. 1e-4 of the gold, gold/100 or gold*100; brackets; tuples and matrices element
by element; scientific notation; "=" sides; sympy.

Where this environment differs, and why: sympy's `parse_latex` needs antlr4 4.11 and math-verify pins
4.9.3, so it fails and the harness's own try/except falls through to `parse_expr` and `latex2sympy`
(here latex2sympy2_extended's, which math-verify ships, in place of latex2sympy2 1.9.1, which pins
antlr4 4.7.2). `parse_expr` evaluates Python; text naming a Python builtin that acts (open, exec,
__...) is not handed to it, which can change a verdict only for such text.
"""

from __future__ import annotations

import math
import re


def _digits(text) -> float | None:
    s = str(text).replace(",", "")
    try:
        return float(s)
    except ValueError:
        if s.endswith("%"):
            s = s[:-1].removesuffix("\\")
            try:
                return float(s) / 100
            except ValueError:
                pass
    return None


def _one_decimal(text: str) -> float | None:
    try:
        return round(float(text.replace(",", "").replace("\\", "")), 1)
    except ValueError:
        return None


def _close(a: float, b: float) -> bool:
    return math.isclose(b, a, rel_tol=1e-4)


def _as_number(text):
    """convert_to_number: a float for "3e8" or "a\\times10^{n}", else the text itself."""
    s = str(text)
    if "e" in s.lower().replace("times", ""):
        try:
            value = float(s)
        except ValueError:
            return s
        return int(value) if value.is_integer() else value
    m = re.search(r"(\d+\.?\d*?)\\times10\^{?([+-]?\d+)}?", s)
    if not m:
        return s
    try:
        value = float(m.group(1)) * 10 ** int(m.group(2))
    except OverflowError:
        value = 0.0
    return int(value) if value.is_integer() else value


def _as_decimal(text):
    """convert_to_decimal: "1e-3", "10^{n}" (anywhere in the text) or "a\\times10^{n}" as a plain
    decimal string, else the text itself."""
    s = str(text)

    def plain(value: float) -> str:
        return format(value, "f").rstrip("0").rstrip(".")

    def scaled(base, exponent: int) -> float:
        try:
            return float(base) * 10 ** exponent
        except OverflowError:
            return 0.0

    if "e" in s.lower():
        try:
            return plain(float(s))
        except ValueError:
            return s
    m = re.search(r"10\^{([+-]?\d+)}", s)
    if m:
        return plain(scaled(1, int(m.group(1))))
    m = re.search(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}", s)
    if m:
        return plain(scaled(m.group(1), int(m.group(2))))
    return s


def _sci_to_e(text: str) -> str:
    """clean_math_func_1: "a\\times10^{n}\\" -> "ae n" (only before a backslash), commas dropped."""
    return re.sub(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}\\",
                  lambda m: f"{float(m.group(1))}e{int(m.group(2))}", text.replace(",", ""))


def _numbers_equal_post(a: str, b: str) -> bool:
    """is_numbers_equal_post: equal to the fewer significant digits of the two."""
    def value(s: str) -> float:
        if "e" in s.lower():
            return float(s)
        s = s.replace("\\", "").replace(",", "")
        m = re.search(r"(\d+\.?\d*?)times10\^{([+-]?\d+)}", s)
        return float(m.group(1)) * 10 ** int(m.group(2)) if m else float(s)

    def significant(s: str) -> int:
        s = s.lower()
        if "e" in s:
            s = f"{float(s):f}"
        return sum(ch.isdigit() for ch in s.rstrip("0").rstrip("."))

    try:
        x, y = value(a), value(b)
    except ValueError:
        return False
    digits = min(significant(a), significant(b))
    scale = max(abs(x), abs(y))
    if scale == 0:
        return abs(x - y) < 1e-10
    return abs(x - y) / scale <= 0.5 * 10 ** (-(digits - 1))


_ACTS = re.compile(r"__|\b(?:import|lambda|open|exec|eval|compile|exit|quit|input|globals|locals|getattr|"
                   r"setattr|delattr|vars|dir|breakpoint|help|memoryview|print)\b")


def _sympy(text: str):
    """The first of sympy's parse_latex, parse_expr and latex2sympy that reads the text (with "\\\\"
    as "\\" first, then as written); the text itself when none does."""
    from latex2sympy2_extended import latex2sympy
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    def safe_parse_expr(s):
        if _ACTS.search(s):
            raise ValueError("not handed to parse_expr")
        return parse_expr(s)

    for parser in (parse_latex, safe_parse_expr, latex2sympy):
        for s in (text.replace("\\\\", "\\"), text):
            try:
                return parser(s)
            except Exception:  # noqa: BLE001 - the harness tries the next reading on any failure
                continue
    return text


def symbolic_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    x, y = _sympy(a), _sympy(b)
    if any(isinstance(v, str) and _ACTS.search(v) for v in (x, y)):
        # unread text: sympy's N() and simplify() would sympify it, that is eval it
        return str(x) == str(y)
    checks = (lambda: str(x) == str(y) or x == y,
              lambda: x.equals(y) or simplify(x - y) == 0,
              lambda: abs(x.lhs - x.rhs).equals(abs(y.lhs - y.rhs)),
              lambda: _close(float(N(x)), float(N(y))),
              lambda: x.shape == y.shape and x.applyfunc(lambda v: round(v, 3)).equals(
                  y.applyfunc(lambda v: round(v, 3))))
    for check in checks:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - each check is tried in turn, as in the harness
            continue
    return False


def _letter_clean(text: str) -> str:
    """grader.choice_answer_clean (the grader's own, simpler than the parser's)."""
    text = text.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", text.upper()) or [text.strip().strip(".")]
    return letters[-1].rstrip(".").rstrip("/")


def _matrix_rows(text: str) -> list[str]:
    body = text[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")]
    return [row.strip() for row in body.split("\\\\") if row.strip()]


def _is_matrix(text: str) -> bool:
    return (text.startswith(("\\begin{pmatrix}", "\\begin{bmatrix}"))
            and text.endswith(("\\end{pmatrix}", "\\end{bmatrix}")))


def math_equal(prediction: str | None, reference: str | None) -> bool:
    """The release's math_equal(prediction, reference) with its defaults (percentages included,
    relative tolerance 1e-4, no inner timeout)."""
    if prediction is None or reference is None:
        return False
    if prediction.strip().lower() == reference.strip().lower():
        return True
    if reference in ("A", "B", "C", "D", "E") and _letter_clean(prediction) == reference:
        return True
    try:
        if _digits(prediction) is not None and _digits(reference) is not None:
            if _one_decimal(prediction) == _one_decimal(reference):
                return True
            p, r = _digits(prediction), _digits(reference)
            return any(_close(p, g) for g in (r / 100, r, r * 100))
    except Exception:  # noqa: BLE001 - the harness passes on any failure here
        pass
    if not prediction:
        return False
    ref, pred = str(reference).strip(), str(prediction).strip()
    if "pmatrix" in pred and "pmatrix" not in ref:
        ref = ", ".join("\\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + "\\end{pmatrix}"
                        for m in re.findall(r"\{.*,.*\}", ref.strip()))
    p_str, r_str = pred, ref
    if (pred.startswith("[") and pred.endswith("]") and not ref.startswith("(")) or (
            pred.startswith("(") and pred.endswith(")") and not ref.startswith("[")):
        p_str, r_str = p_str.strip("[]()"), r_str.strip("[]()")
    for ch in "{}()":
        p_str, r_str = p_str.replace(ch, ""), r_str.replace(ch, "")
    if p_str.lower() == r_str.lower():
        return True
    bracketed = r"(\(|\[).+(\)|\])"
    if re.match(bracketed, pred) and re.match(bracketed, ref):
        p_parts, r_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(math_equal(a, b) for a, b in zip(p_parts, r_parts)):
            return True
    if _is_matrix(pred) and _is_matrix(ref):
        p_rows, r_rows = _matrix_rows(pred), _matrix_rows(ref)
        if len(p_rows) == len(r_rows) and all(
                len(pr.split("&")) == len(rr.split("&"))
                and all(math_equal(a, b) for a, b in zip(pr.split("&"), rr.split("&")))
                for pr, rr in zip(p_rows, r_rows)):
            return True
    if _as_number(pred) == _as_number(ref):
        return True
    if pred.count("=") == 1 and ref.count("=") == 1:
        lp, rp = pred.split("=")
        lr, rr = ref.split("=")
        p_zero, r_zero = f"{lp.strip()} - ({rp.strip()})", f"{lr.strip()} - ({rr.strip()})"
        if symbolic_equal(p_zero, r_zero) or symbolic_equal(f"-({p_zero})", r_zero):
            return True
    elif pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in ref:
        if math_equal(pred.split("=")[1], ref):
            return True
    elif ref.count("=") == 1 and len(ref.split("=")[0].strip()) <= 2 and "=" not in pred:
        if math_equal(pred, ref.split("=")[1]):
            return True
    if ("=" in pred or "=" in ref) and math_equal(pred.split("=")[-1].replace("{", "("),
                                                  ref.split("=")[-1].replace("{", "(")):
        return True
    if _as_decimal(pred) == _as_decimal(ref):
        return True
    if symbolic_equal(pred, ref):
        return True
    try:
        return _numbers_equal_post(_sci_to_e(pred), _sci_to_e(ref))
    except Exception:  # noqa: BLE001
        return False
