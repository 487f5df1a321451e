"""The authors' grading rule: math-evaluation-harness as the CGD release runs it, quirks included.

Sources (behaviour reproduced from the published files, not their code):
- extraction and normalisation: math-evaluation-harness's parser as Qwen2.5-Math's evaluation
  carries it (QwenLM/Qwen2.5-Math, evaluation/parser.py: `extract_answer`, `strip_string`,
  `parse_ground_truth`, `run_execute`). The release's eval/evaluate_math/math_eval.py imports it
  (`from parser import *`) and calls `run_execute(executor, code, prompt_type, data_name)`, that
  lineage's signature; the release does not ship its parser.py. Before extraction math_eval.py cuts
  the output at its stop words and after an "answer" header, and re-reads a letter for a gold among
  A-E.
- equivalence: the release's own eval/evaluate_math/grader.py `math_equal` (cgd.grading.harness_equal),
  each sample under a 3 s limit as the harness's evaluate.py runs it (pebble, timeout=3).
- multiple choice (GPQA, MMLU-Pro): the release's eval/evaluate_mmlu-pro/evaluate_from_local.py:
  the first "answer is (X)", else the last "Answer: X" on the first line having one, else the last
  lone capital A-J; with no letter, `save_res` credits a seeded random guess (random.seed(12345),
  randint over the options). The release's GPQA script calls a run_open.py it does not include, so
  GPQA is read with the MMLU-Pro rule here.
"""

from __future__ import annotations

import random
import re
import signal
import threading

from cgd.grading.harness_equal import math_equal
from cgd.grading.rules import Key, Verdict

# our benchmark name -> the harness's data_name (its parse rules differ by data set)
DATA_NAMES = {"math500": "math", "math": "math", "minerva": "minerva_math", "gsm8k": "gsm8k",
              "olympiadbench": "olympiadbench", "amc23": "amc23", "aime24": "aime24", "aime25": "aime25",
              "theoremqa": "theoremqa"}
SKIP_UNIT = {"minerva_math", "carp_en"}  # the parser's STRIP_EXCEPTIONS
TIMEOUT_S = 3  # evaluate.py: pool.map(math_equal_process, params, timeout=3)

# math_eval.py's stop words (plus Llama-3's end of turn, added there for llama3 model paths)
STOP_WORDS = ["</s>", "<|im_end|>", "<|endoftext|>", "(END)", "\\[END\\]", "**END**", "[END]", "</answer>",
              "<|end_of_solution|>", "<|eot_id|>"]
ANSWER_HEADER = "<|start_header_id|>answer<|end_header_id|>"

# strip_string's unit words ("units mainly from MathQA"), each also with a trailing "s"; an
# experimental input of the harness, kept as published (regex metacharacters included)
_UNITS = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey",
    "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain",
    "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change",
    "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c",
    "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f",
    "profit", "minw", "yr", "women", "feet", "am", "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee",
    "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day", "hour", "minute", "min", "second",
    "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare", "more", "sec", "unit",
    "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter", "loss",
    "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .",
    "metre", "meter", "inch",
]
_UNIT_PATTERNS = [re.compile(r"(^|\W)" + u + r"($|\W)") for u in _UNITS + [u + "s" for u in _UNITS]]


# ---------------------------------------------------------------- normalisation (strip_string)


def _fix_fracs(text: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1b -> \\frac{1}{b}, \\frac1{72} -> \\frac{1}{72}; text with a
    \\frac followed by fewer than two characters is returned unchanged."""
    head, *pieces = text.split("\\frac")
    out = head
    for piece in pieces:
        out += "\\frac"
        if piece.startswith("{"):
            out += piece
            continue
        if len(piece) < 2:
            return text
        a, b, rest = piece[0], piece[1], piece[2:]
        out += f"{{{a}}}{{{b}}}{rest}" if b != "{" else f"{{{a}}}{b}{rest}"
    return out


def _fix_a_slash_b(text: str) -> str:
    """"3/4" -> \\frac{3}{4} when both sides are integers written plainly (or hold a sqrt)."""
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        a = parts[0] if "sqrt" in parts[0] else int(parts[0])
        b = parts[1] if "sqrt" in parts[1] else int(parts[1])
    except ValueError:
        return text
    return f"\\frac{{{a}}}{{{b}}}" if text == f"{a}/{b}" else text


def _word_number(text: str) -> str:
    from word2number import w2n

    try:
        return str(w2n.word_to_num(text))
    except Exception:  # noqa: BLE001 - w2n raises on anything that is not number words
        return text


def strip_string(text, skip_unit: bool = False) -> str:
    """The harness's answer normalisation, step for step."""
    s = str(text).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    without_text_unit = re.sub(r"\\text{.*?}$", "", s).strip()
    if without_text_unit:
        s = without_text_unit
    if not skip_unit:
        for _ in range(2):
            for pattern in _UNIT_PATTERNS:
                s = pattern.sub(r"\1\2", s) or s
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _word_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (its unwrapping of "{x}" / "(x)" / "[x]" tests str.isalnum() on the bracketed text: never true)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(s))


# ---------------------------------------------------------------- extraction (extract_answer)


def _after_last_boxed(rest: str) -> str:
    """What follows the last "boxed": its balanced {...}, else the text up to the next "$"."""
    if rest[0] != "{":
        return rest.split("$")[0].strip()
    depth, out = 1, []
    for ch in rest[1:]:
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            break
        out.append(ch)
    return "".join(out)


def extract_answer(output: str, data_name: str) -> str:
    """What the harness reads as the answer: Minerva's "final answer is $X$. I hope", else the last
    "boxed", else what follows the last "he answer is" / "final answer is", else the last number."""
    text = output.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        rest = text.split("boxed")[-1]
        if not rest:
            return ""
        pred = _after_last_boxed(rest)
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    if pred.endswith("."):
        pred = pred[:-1]
    if pred.endswith("/"):
        pred = pred[:-1]
    return strip_string(pred, skip_unit=data_name in SKIP_UNIT)


def _choice_clean(text: str) -> str:
    """parser.choice_answer_clean: the letter after "answer is"/"choice is", else the last lone A-E."""
    triggers = ("choice is", "answer is")
    text = text.strip("\n")
    if any(text.count(t) > 1 for t in triggers):
        text = text.split("\n\n")[0]
    parts = re.split("|".join(triggers), text)
    flagged = len(parts) > 1
    text = (parts[-1] if flagged else text).strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", text.upper()) or [text.strip().strip(".")]
    return (letters[0] if flagged else letters[-1]).rstrip(".").rstrip("/")


def prediction(output: str, gold: str, data_name: str) -> str:
    """math_eval.py's prediction for an output: cut at an answer header and at its stop words, read by
    run_execute (extract_answer, then strip_string again); "" for an empty output."""
    code = (output or "").strip()
    if ANSWER_HEADER in code:
        code = code.split(ANSWER_HEADER, 1)[1].strip()
    for word in STOP_WORDS:
        if word in code:
            code = code.split(word)[0].strip()
    if not code:
        return ""
    pred = strip_string(extract_answer(code, data_name), skip_unit=data_name in SKIP_UNIT)
    if gold in ("A", "B", "C", "D", "E") and pred not in ("A", "B", "C", "D", "E"):
        pred = _choice_clean(code)
    elif all(c in "ABCDE" for c in gold) and not all(c in "ABCDE" for c in pred):  # "" counts as letters
        pred = "".join(c for c in pred if c in "ABCDE")
    return pred


def gold_answer(gold: str, data_name: str) -> str:
    """parse_ground_truth's gold: strip_string of the answer (MATH reads it from the solution's box,
    which extract_answer normalises once more; Minerva keeps its units)."""
    if data_name in SKIP_UNIT:
        return strip_string(gold, skip_unit=True)
    once = strip_string(gold)
    return strip_string(once) if data_name == "math" else once


# ---------------------------------------------------------------- multiple choice (MMLU-Pro's script)

LETTERS = "ABCDEFGHIJ"


def extract_letter(output: str) -> str | None:
    m = re.search(r"answer is \(?([A-J])\)?", output)
    if m:
        return m.group(1)
    m = re.search(r".*[aA]nswer:\s*([A-J])", output)
    if m:
        return m.group(1)
    m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", output, re.DOTALL)
    return m.group(0) if m else None


def grade_choice(key: Key, output: str) -> Verdict:
    letter = extract_letter(output or "")
    if letter is None:
        guess = random.Random(12345).randint(0, key.n_options - 1)
        ok = guess == LETTERS.index(key.gold.strip().upper())
        return Verdict(ok, LETTERS[guess], "random_guess")
    ok = letter == key.gold.strip().upper()
    return Verdict(ok, letter, "correct" if ok else "wrong")


# ---------------------------------------------------------------- one entry point


class _Timeout(BaseException):
    """Past the limit; not an Exception, so the harness's own `except Exception` cannot swallow it."""


def _with_limit(fn, seconds: float):
    """fn() under a wall-clock limit (SIGALRM) where this is a process's main thread; unlimited
    elsewhere. Raises _Timeout when the limit passes."""
    if threading.current_thread() is not threading.main_thread():
        return fn()

    def expire(_signum, _frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def grade(key: Key, output: str, timeout_s: float = TIMEOUT_S) -> Verdict:
    """The verdict on `output` under the authors' rule for the key's benchmark."""
    if key.answer_type == "choice":
        return grade_choice(key, output)
    data_name = DATA_NAMES.get(key.benchmark, "math")
    try:
        gold = gold_answer(key.gold, data_name)
        pred = prediction(output, gold, data_name)
        ok = _with_limit(lambda: math_equal(pred, gold), timeout_s)
    except _Timeout:
        return Verdict(False, None, "timeout")
    if not pred:
        return Verdict(False, None, "no_final_answer")
    return Verdict(bool(ok), pred, "correct" if ok else "wrong")
