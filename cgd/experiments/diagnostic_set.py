"""The rows stage 08's probes read (paper Appendix C), built by the `diagnostic_set` stage.

Two kinds of set, chosen by `diagnostics.source`:

- `cgd_data`: a seeded sample of this run's stage-04 rows with all three generations (the CPU demo;
  the models were trained on these rows, which the report says);
- a data source (the paper: 500 random OpenMathInstruct-2 rows): sampled like the training pool
  (normalized, deduplicated, decontaminated against the benchmarks) and apart from the training
  sample's questions, then answered by the student, critiqued and refined by the teacher with the
  same notebooks, prompts and models as stages 01-04. The four notebooks run as one sweep point
  under `<set>/point/`, so an interrupted stage resumes at its first unfinished notebook and shard.

Every sampled row is accounted for: the report counts the usable rows (status ok) and the others
by status, so a reader sees how many of the requested rows the probes got.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from cgd import config as P
from cgd.evaluation.diagnostics import diagnostic_rows
from cgd.experiments import sweeps
from cgd.runtime import io, provenance

CHAIN = ("01_sample_data", "02_rollout", "03_critique", "04_refine")
STAGE_METRICS = {name: f"metrics/{name}.json" for name in CHAIN}


def point_values(cfg: P.Params, training_file: str) -> dict:
    """What the point runs with: the diagnostic source in place of the training pool, every
    complete row kept (no correct/incorrect mixture), the training questions held out."""
    d = cfg.diagnostics
    return {"data.source": d.source, "data.hub_id": d.hub_id, "data.split": d.split,
            "data.revision": d.revision, "data.n_train": d.rows,
            "refine.incorrect_fraction": None, "refine.mixture_total": None, "holdout_file": training_file}


def build(params_file: str, out_dir: str | Path, metrics_file: str,
          training_file: str = sweeps.PIPELINE["train"], cgd_data_file: str = sweeps.PIPELINE["cgd_data"],
          kernel: str = "cgd", execute=sweeps.execute_notebook) -> dict:
    """Write `<out_dir>/rows.jsonl` (the probes' rows, in id order) and the report; returns it."""
    cfg = P.load(params_file)
    d = cfg.diagnostics
    out = Path(out_dir)
    point = out / "point"
    if d.source == "cgd_data":
        if point.exists():  # a previous data-source set: not this one's
            shutil.rmtree(point)
        rows = list(io.read_jsonl(cgd_data_file))
        chosen = diagnostic_rows(rows, d.rows, cfg.seed)
        report = {"source": "cgd_data", "from": cgd_data_file, "trained_on": True, "sampled": len(rows),
                  "status": dict(sorted(Counter(r.get("status") for r in rows).items())), "rows": len(chosen)}
    else:
        result = sweeps.run_point(point, CHAIN, point_values(cfg, training_file), params_file,
                                  kernel=kernel, execute=execute)
        refined = list(io.read_jsonl(point / "data" / "04_refine" / "cgd_data.jsonl"))
        chosen = sorted((r for r in refined if r.get("status") == "ok"), key=lambda r: r["id"])
        sample = io.read_json(point / STAGE_METRICS["01_sample_data"])
        report = {"source": d.source, "hub_id": d.hub_id, "split": d.split, "revision": d.revision, "trained_on": False,
                  "requested": d.rows, "sampled": len(refined), "held_out": sample.get("held_out"),
                  "status": dict(sorted(Counter(r.get("status") for r in refined).items())),
                  "rows": len(chosen), "wall_s": result.get("wall_s"),
                  "stages": {name: str(point / path) for name, path in STAGE_METRICS.items()}}
    if len(chosen) < 2:
        raise ValueError(f"the diagnostic set has {len(chosen)} usable rows (status ok): {report}")
    io.write_jsonl(out / "rows.jsonl", chosen)
    io.write_json(metrics_file, provenance.stamp(report))
    return report
