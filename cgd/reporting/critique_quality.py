"""The critique-quality table in stage 07: the judge's scores by the student answer's label, beside
the release's (README, "Critique Quality Analysis"), from metrics/critique_quality.json (stage
critique_quality, cgd/evaluation/critique_quality.py).

Rows: informativeness and specificity (mean ± SD [bootstrap CI of the mean]), the share with both
>= 4 and the share at maximum informativeness (% [CI]). Columns: wrong, right, wrong - right (CI),
and the effect size the release reports for the row: Cohen's d, the odds ratio, the ratio of shares.
The release's numbers are references unless this run's student is the release's.
"""

from __future__ import annotations

from cgd.reporting import tables

ITEM = "Critique quality (revised paper)"  # its INDEX.md entry
PAPER_TABLE = "critique_quality"
ROWS = ("informativeness", "specificity", "both_at_least_4", "max_informativeness")
COLUMNS = ["wrong", "right", "wrong_minus_right", "effect"]
EFFECT = {"informativeness": "cohens_d", "specificity": "cohens_d", "both_at_least_4": "odds_ratio",
          "max_informativeness": "ratio"}
TITLES = {"informativeness": "Informativeness (1-5)", "specificity": "Specificity (1-5)",
          "both_at_least_4": "Both ≥ 4 (%)", "max_informativeness": "Informativeness 5 (%)"}


def paper_values(reported: list[dict]) -> dict[tuple[str, str, str], float]:
    """(label or wrong_minus_right, row, statistic) -> the release's value."""
    return {(r["method"], r["benchmark"], r["setting"]): r["value"] for r in reported if r["table"] == PAPER_TABLE}


def _r(v, digits):
    return None if v is None else round(v, digits)


def table(metrics: dict, reported: list[dict], comparable: bool) -> tuple[list[str], dict]:
    """Rows keyed by ROWS (titles from `title`), Cells for COLUMNS."""
    ref = paper_values(reported)
    rows: dict[str, dict[str, tables.Cell]] = {}
    delta = metrics["wrong_minus_right"]
    for row in ROWS:
        score = row in ("informativeness", "specificity")
        digits = 2 if score else 1
        cells = {}
        for lab in ("wrong", "right"):
            stat = metrics["by_label"][lab][row]
            paper = ref.get((lab, row, "mean" if score else "share"))
            cells[lab] = tables.Cell(_r(stat["mean"], digits), _r(stat["ci_low"], digits), _r(stat["ci_high"], digits),
                                     paper, sd=_r(stat.get("sd"), digits) if score else None,
                                     paper_sd=ref.get((lab, row, "sd")), comparable=comparable, digits=digits)
        if score:
            d = delta[row]
            cells["wrong_minus_right"] = tables.Cell(_r(d["diff"], 2), _r(d["ci_low"], 2), _r(d["ci_high"], 2),
                                                     ref.get(("wrong_minus_right", row, "diff")),
                                                     comparable=comparable, digits=2)
            cells["effect"] = tables.Cell(_r(d["cohens_d"], 2), _r(d["d_ci_low"], 2), _r(d["d_ci_high"], 2),
                                          ref.get(("wrong_minus_right", row, "cohens_d")), comparable=comparable,
                                          digits=2)
        else:
            w, r = cells["wrong"].run, cells["right"].run
            cells["wrong_minus_right"] = tables.Cell(None if w is None or r is None else round(w - r, 1), None, None,
                                                     ref.get(("wrong_minus_right", row, "diff")),
                                                     comparable=comparable)
            if row == "both_at_least_4":
                o = delta["both_at_least_4_odds_ratio"]
                cells["effect"] = tables.Cell(_r(o["value"], 2), _r(o["ci_low"], 2), _r(o["ci_high"], 2),
                                              ref.get(("wrong_minus_right", row, "odds_ratio")), comparable=comparable,
                                              digits=2)
            else:
                cells["effect"] = tables.Cell(_r(delta["max_informativeness_ratio"], 1), None, None,
                                              ref.get(("wrong_minus_right", row, "ratio")), comparable=comparable)
        rows[row] = cells
    return COLUMNS, rows


def to_frame(metrics: dict, columns: list[str], rows: dict):
    """The table with its row titles and each label's judged count in the column titles."""
    import pandas as pd

    n = {lab: metrics["by_label"][lab]["n"] for lab in ("wrong", "right")}
    titles = {"wrong": f"Wrong answer (n={n['wrong']})", "right": f"Right answer (n={n['right']})",
              "wrong_minus_right": "Wrong − right [CI]", "effect": "Cohen's d / odds ratio / ratio"}
    return pd.DataFrame([{"Score": TITLES[k], **{titles[c]: cells[c].text() for c in columns}} for k, cells in rows.items()])


def caption(metrics: dict) -> str:
    s, u = metrics["sample"], metrics["unparsed"]
    return (f"Judge {metrics['judge']} ({metrics['backend']}), rubric {metrics['rubric']}; {metrics['judged']} critiques "
            f"judged of {s['usable']} usable (asked {s['asked']}, shortfall {s['shortfall']}); unparsed replies, left "
            f"out: {u['wrong']} wrong, {u['right']} right; generation errors {metrics['errors']}.")
