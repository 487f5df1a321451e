"""The methods the paper compares, in one registry: name, figure label, table title, colour, order.

Registry order is the row order of every table (the paper's Table 1: Base, + SFT, + Distilled SFT,
+ CFT, + CFT*, + CGD) with the ablation CGD w/o critique last. `colour` indexes seaborn's
colour-blind palette and is fixed per method, so a method keeps its colour in every figure whatever
subset a figure shows. Tables, figures and params (`train.methods`) all read this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Method:
    name: str  # the key in params (train.methods), run names (<name>-seed<k>) and metrics
    label: str  # figures' legends and ticks
    title: str  # tables' row titles
    colour: int  # index into seaborn's "colorblind" palette
    trained: bool = True  # False: the untrained student, evaluated as the reference row


REGISTRY: tuple[Method, ...] = (
    Method("base", "Base", "Base", 0, trained=False),
    Method("sft", "SFT", "+ SFT", 1),
    Method("distilled_sft", "Distilled SFT", "+ Distilled SFT", 2),
    Method("cft", "CFT", "+ CFT", 3),
    # the paper's CFT*: CFT trained on WebInstruct-CFT's GPT-4o critiques (section webinstruct_cft)
    Method("cft_gpt4o", "CFT*", "+ CFT* (GPT-4o critiques, WebInstruct-CFT)", 6),
    Method("cgd", "CGD", "+ CGD", 4),
    Method("cgd_no_critique", "CGD w/o critique", "+ CGD w/o critique", 5),
)
BY_NAME = {m.name: m for m in REGISTRY}
NAMES = tuple(m.name for m in REGISTRY)
TRAINED = tuple(m.name for m in REGISTRY if m.trained)


def label(name: str) -> str:
    """A figure's name for a method; an unknown key is shown as it is."""
    return BY_NAME[name].label if name in BY_NAME else name


def title(name: str) -> str | None:
    """A table's row title for a method, None for an unknown key."""
    return BY_NAME[name].title if name in BY_NAME else None


def ordered(names: Iterable[str]) -> list[str]:
    """`names` in registry order; names the registry does not know go last, in their own order."""
    names = list(dict.fromkeys(names))
    return [n for n in NAMES if n in names] + [n for n in names if n not in BY_NAME]
