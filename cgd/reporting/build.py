"""Stage 07 item by item: each method of `Report` builds one paper table or figure (or a group that
shares inputs), writes its files under figures/ and adds its INDEX.md entry, "not run" with what
enables it where its inputs do not exist. Notebook 07 calls them in the paper's order and shows what
each returns; nothing is filled in from the paper's numbers alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cgd.config import Params, section
from cgd.config import methods as registry
from cgd.evaluation import evaluate
from cgd.experiments.sweeps import ABLATIONS
from cgd.reporting import (
    appendix_c,
    critique_content,
    critique_quality,
    cross_family,
    figures,
    flaw_source,
    graders,
    paper,
    points,
    reasoning,
    tables,
)
from cgd.reporting.index import NOT_BUILT, index_markdown, provenance_groups
from cgd.runtime import io, provenance


@dataclass
class Shown:
    """What an item puts on the page: frames, Markdown headings and figures, in order."""

    items: list = field(default_factory=list)


def _has_run(rows: dict) -> bool:
    return any(cell.run is not None for cells in rows.values() for cell in cells.values())


@dataclass
class Report:
    cfg: Params
    out: Path
    metrics: dict[str, dict]  # model name -> its stage-06 metrics
    reported: list[dict]  # the paper's numbers
    points: list[dict]  # the ablation points params.yaml asks for, and any sweep folders'
    sweep_dirs: list[str]
    index: list[dict] = field(default_factory=list)  # one entry per paper item, for INDEX.md
    comparisons: dict = field(default_factory=dict)

    @classmethod
    def open(cls, cfg: Params, eval_dir: str, out_dir: str, ablations_dir: str, sweep_dirs: list[str]) -> "Report":
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        pts = [p for p in points.load_points(ablations_dir) if points.is_current(p, cfg)]
        pts += points.load_points(*sweep_dirs)
        return cls(cfg, out, tables.load_eval_metrics(eval_dir), paper.load(), pts, list(sweep_dirs))

    def summary(self) -> str:
        counts = {a: sum(p["ablation"] == a for p in self.points) for a in ABLATIONS}
        return (f"{len(self.metrics)} evaluated models: {', '.join(self.metrics)}; paper rows: {len(self.reported)}; "
                f"compared with the paper's {self.cfg.figures.paper_model}\nablation points: {counts}")

    # ------------------------------------------------------------ helpers

    def against_paper(self, rows: dict, paper_model: str | None = None) -> dict:
        """A difference to the paper only where this run's student is the paper row's model; beside
        another student (the CPU demo's 135M) the paper's number is a reference ("ref.")."""
        same = tables.compares_with_paper(self.cfg.student.model, paper_model or self.cfg.figures.paper_model)
        return rows if same else tables.as_reference(rows)

    def _entry(self, item: str, files: list, status: str, enable: str | None = None) -> None:
        entry = {"item": item, "files": [str(p) for p in files], "status": status}
        if enable is not None:
            entry["enable"] = enable
        self.index.append(entry)

    def _not_run(self, item: str, enable: str | None = None) -> None:
        self._entry(item, [], "not run", enable if enable is not None else NOT_BUILT[item])

    @property
    def rule(self) -> str | None:
        """The grading rule behind every accuracy shown (eval.grader of the runs and points read)."""
        # every evaluation a point holds (a flaw-source point may hold none yet)
        read = list(self.metrics.values()) + [ev for p in self.points for ev in (p.get("eval") or {}).values()]
        rule = graders.rule_of(read)
        # a checkpoint chosen by its score (eval.checkpoint) is part of how a number was made: say so
        labels = sorted({m["checkpoint"]["label"] for m in read if m.get("checkpoint")})
        return f"{rule}; {', '.join(labels)}" if rule and labels else rule

    def _ruled(self, rows: dict, columns: list[str] | None = None) -> dict:
        """Accuracy cells tagged with the rule that graded them (all of `columns`, or every cell)."""
        if columns is None:
            return tables.with_grader(rows, self.rule)
        tagged = tables.with_grader({m: {c: cells[c] for c in columns if c in cells} for m, cells in rows.items()},
                                    self.rule)
        return {m: {**cells, **tagged[m]} for m, cells in rows.items()}

    def _titled(self, title: str) -> str:
        return f"{title} ({self.rule} rule)" if self.rule else title

    def _save(self, fig, stem: str) -> list[Path]:
        return figures.save(fig, self.out / stem, self.cfg.figures.formats, self.cfg.figures.dpi)

    # ------------------------------------------------------------ the items

    def paired_claims(self, samples_dir: str, comparisons_file: str) -> dict:
        """CGD − CFT and CGD − CGD w/o critique, paired on the same problems (bootstrap CI, McNemar p)."""
        self.comparisons = evaluate.compare_methods(tables.load_eval_samples(samples_dir), self.cfg.eval,
                                                    self.cfg.train.seeds, self.cfg.seed)
        io.write_json(comparisons_file, provenance.stamp(self.comparisons))
        return self.comparisons

    def main_table(self) -> Shown:
        """Table 1 (or 3, 6, 7 by data.source and figures.paper_model), with the paired Δ row."""
        cfg = self.cfg
        name = tables.main_table(cfg.data.source, cfg.figures.paper_model)
        if name == "table3":  # the base model: CGD beside SimpleRL-Zero's official numbers
            columns, rows = tables.table3(self.metrics, self.reported)
        else:
            columns, rows = tables.table1(self.metrics, self.reported, cfg.figures.paper_model, name,
                                          self.comparisons.get("cgd_minus_cft", {}).get("pooled"))
        rows = self._ruled(self.against_paper(rows))
        files = tables.write(name, columns, rows, self.out) if _has_run(rows) else []
        ran = [c for c in columns if not c.startswith("avg") and any(rows[m][c].run is not None for m in rows)]
        wanted = len([c for c in columns if not c.startswith("avg")])
        status = ("not run" if not files else "done" if len(ran) == wanted
                  else f"partial: {len(ran)} of {wanted} benchmarks")
        self._entry(f"Table {name[5:]}", files, status,
                    "every benchmark in eval.benchmarks (the paper profiles list all eight); the CFT* row: "
                    "cft_gpt4o in train.methods (`make profile NAME=llama8b-webinstruct`)")
        return Shown([f"{name}: {cfg.figures.paper_model}, trained on {cfg.data.source}", tables.to_frame(columns, rows)])

    def table2(self) -> Shown:
        columns, rows = tables.table2(self.metrics, self.reported, self.cfg.figures.paper_model)
        rows = self.against_paper(rows)
        files = tables.write("table2", columns, rows, self.out) if _has_run(rows) else []
        self._entry("Table 2", files, "done" if files else "not run",
                    "eval.general.tasks (`make profile NAME=llama8b-webinstruct`; needs hub access); "
                    "the CFT* row: cft_gpt4o in train.methods (same profile)")
        return Shown([tables.to_frame(columns, rows)] if files else ["not run: eval.general.tasks is empty"])

    def _main_runs(self) -> list[dict]:
        return [{"method": n.rsplit("-seed", 1)[0], "x": self.cfg.train.lr, "seed": int(n.rsplit("-seed", 1)[1]),
                 "metrics": m} for n, m in self.metrics.items() if n != "base"]

    def learning_rates(self) -> Shown:
        """Table 4 and Fig. 7: the main runs at train.lr plus the lr ablation's points."""
        cfg = self.cfg
        swept = {p["values"]["method"] for p in self.points if p["ablation"] == "lr"}
        lr_methods = [m for m in cfg.ablations.lr.methods if m in swept] + sorted(swept - set(cfg.ablations.lr.methods))
        main_runs = self._main_runs()
        lr_runs: dict[float, dict] = {}
        for r in main_runs:
            lr_runs.setdefault(r["x"], {})[f"{r['method']}-seed{r['seed']}"] = r["metrics"]
        for p in (p for p in self.points if p["ablation"] == "lr"):
            name, ev = points.run_metrics(p)
            lr_runs.setdefault(float(p["values"]["train.lr"]), {}).setdefault(name, ev)  # a main run at that rate wins
        columns, rows = tables.table4(lr_runs, self.reported)  # the paper's Table 4 is LLaMA3.1-8B Instruct's
        rows = self._ruled(self.against_paper(rows, "LLaMA3.1-8B Instruct"))
        files = tables.write("table4", columns, rows, self.out) if _has_run(rows) else []
        rates = {m: sorted(lr for lr, runs in lr_runs.items() if any(n.startswith(m + "-seed") for n in runs))
                 for m in ("cgd", "cft")}
        paper_rates = sorted({float(r["setting"].removeprefix("lr=")) for r in self.reported if r["table"] == "table4"})
        missing = [lr for lr in paper_rates if not all(lr in r for r in rates.values())]
        ran = "; ".join(f"{m} at {', '.join(f'{x:g}' for x in r) or 'no rate'}" for m, r in rates.items())
        self._entry("Table 4", files, "not run" if not files else "done" if not missing else
                    f"partial: {ran}; the paper's {', '.join(f'{x:g}' for x in missing)} not run", NOT_BUILT["Table 4"])
        shown = Shown([tables.to_frame(columns, rows)])
        frame = points.curve_frame(self.points, "lr", [r for r in main_runs if r["method"] in lr_methods])
        shown.items.append(frame)
        if frame.empty or frame.x.nunique() < 2:
            self._not_run("Fig. 7")
        else:
            fig = figures.curve_plot(frame, lr_methods, "learning rate", self._titled("Accuracy vs. learning rate"),
                                     log_x=True)
            self._entry("Fig. 7", self._save(fig, "fig7_lr"), "done", f"{frame.x.nunique()} rates")
            shown.items.append(fig)
        return shown

    def _curve(self, item: str, ablation: str, stem: str, x_label: str, title: str, status) -> Shown:
        frame = points.curve_frame(self.points, ablation)
        if frame.empty:
            self._not_run(item)
            return Shown([frame])
        fig = figures.curve_plot(frame, registry.ordered(set(frame.method)), x_label, self._titled(title))
        self._entry(item, self._save(fig, stem), status(frame))
        return Shown([frame, fig])

    def mixture(self) -> Shown:
        """Fig. 5: CGD over the share of incorrect student answers at a fixed total."""
        return self._curve("Fig. 5", "mixture", "fig5_mixture", "incorrect student answers in the training data (%)",
                           "Accuracy vs. critique mixture",
                           lambda f: "done" if f.x.nunique() >= 5 else f"partial: {f.x.nunique()} of 5 mixtures")

    def epochs(self) -> Shown:
        """Fig. 6: accuracy after every epoch."""
        return self._curve("Fig. 6", "epochs", "fig6_epochs", "epoch", "Accuracy over training epochs",
                           lambda f: "done")

    def _by_teacher(self) -> dict[str, dict[str, dict]]:
        """Teacher model -> eval metrics of ablations.teacher.method's runs on its data: the profile's
        teacher (the main runs) first, then each teacher point's."""
        cfg = self.cfg
        method = cfg.ablations.teacher.method
        by_teacher = {cfg.teacher.model: {n: m for n, m in self.metrics.items() if n.startswith(method + "-seed")}}
        for p in (p for p in self.points if p["ablation"] == "teacher"):
            name, ev = points.run_metrics(p)
            by_teacher.setdefault(p["overrides"].get("teacher.model", cfg.teacher.model), {})[name] = ev
        return by_teacher

    def cross_family(self) -> Shown:
        """The release's cross-family table (Qwen2.5-Math-7B): base, CFT with GPT-4o's and the teacher's
        critiques, CGD with each teacher, beside the release's numbers."""
        cfg = self.cfg
        if cfg.figures.paper_model != cross_family.PAPER_MODEL:
            self._not_run(cross_family.ITEM)
            return Shown()
        columns, rows = cross_family.table(self.metrics, self._by_teacher(), cfg.teacher.model, self.reported,
                                           cfg.figures.paper_model)
        if not _has_run(rows):
            self._not_run(cross_family.ITEM)
            return Shown()
        rows = self._ruled(self.against_paper(rows))
        done = sum(all(c.run is not None for c in cells.values()) for cells in rows.values())
        self._entry(cross_family.ITEM, tables.write("cross_family", columns, rows, self.out),
                    f"done: {done} of {len(rows)} rows complete")
        return Shown([f"cross-family: {cfg.figures.paper_model}", tables.to_frame(columns, rows)])

    def teachers(self) -> Shown:
        """Table 8: the same student trained on different teachers' critiques and refinements."""
        cfg = self.cfg
        by_teacher = self._by_teacher()
        if len(by_teacher) < 2:
            self._not_run("Table 8")
            return Shown()
        base = {n: m for n, m in self.metrics.items() if n == "base"}
        columns, rows = tables.table8(base, by_teacher, self.reported, cfg.figures.paper_model)
        rows = self._ruled(self.against_paper(rows))
        self._entry("Table 8", tables.write("table8", columns, rows, self.out), f"done: {len(by_teacher)} teachers")
        return Shown([tables.to_frame(columns, rows)])

    def flaw_sources(self, samples_dir: str, reports_dir: str) -> Shown:
        """Beyond the paper: y' by the student itself or by another model, paired on the same problems."""
        cfg = self.cfg
        gathered = flaw_source.gather(self.points, self.metrics, samples_dir, reports_dir, cfg)
        if gathered is None:
            self._not_run(flaw_source.ITEM)
            return Shown()
        columns, rows, sources = gathered
        rows = self._ruled(rows, [c for c in columns if c not in tables.FLAW_DATA_COLUMNS])
        files = tables.write("flaw_source", columns, rows, self.out)
        fig = figures.flaw_source_plot(rows, cfg.ablations.flaw_source.methods, sources,
                                       "Who wrote y′: the student itself or another model")
        files += self._save(fig, "flaw_source")
        self._entry(flaw_source.ITEM, files, f"done: {len(sources)} source(s) beside the student's own y′",
                    "; ".join(f"{s}: {cfg.ablations.flaw_source.sources[s]}" for s in sources))
        return Shown([tables.to_frame(columns, rows), fig])

    def critique_content(self, samples_dir: str) -> Shown:
        """The revised paper's critique-content ablation: A (the main run) beside B (another row's
        critique) and C (a generic one), each paired with A on the same problems."""
        cfg = self.cfg
        same = tables.compares_with_paper(cfg.student.model, "LLaMA3.1-8B Instruct")
        gathered = critique_content.gather(self.points, self.metrics, samples_dir, cfg, self.reported, same)
        if gathered is None:
            self._not_run(critique_content.ITEM)
            return Shown()
        columns, rows, variants, data = gathered
        rows = self._ruled(rows)
        files = tables.write("critique_content", columns, rows, self.out)
        fig = figures.critique_content_plot(rows, cfg.ablations.critique_content.methods, variants,
                                            self._titled("Critique content: each variant − the main run's critiques"))
        files += self._save(fig, "critique_content")
        caption = critique_content.caption(variants, data)
        self._entry(critique_content.ITEM, files, f"done: {len(variants)} variant(s) beside A (the main run)", caption)
        return Shown([tables.to_frame(columns, rows), caption, fig])

    def critique_quality(self, metrics_file: str) -> Shown:
        """The revised paper's LLM-as-judge table: the judge's scores of the training critiques by
        the student answer's label, beside the release's."""
        m = io.read_json(metrics_file) if Path(metrics_file).exists() else {}
        if m.get("status") != "done":
            self._not_run(critique_quality.ITEM)
            return Shown()
        same = tables.compares_with_paper(self.cfg.student.model, "LLaMA3.1-8B Instruct")
        columns, rows = critique_quality.table(m, self.reported, same)
        frame = critique_quality.to_frame(m, columns, rows)
        files = [self.out / "critique_quality.md", self.out / "critique_quality.csv"]
        io.write_text(files[0], frame.to_markdown(index=False) + "\n")
        io.write_text(files[1], tables.to_long(columns, rows).to_csv(index=False))
        caption = critique_quality.caption(m)
        self._entry(critique_quality.ITEM, files, f"done: {m['judged']} critiques judged", caption)
        return Shown([frame, caption])

    def reasoning(self) -> Shown:
        """The release's AIME24 table for every evaluated model: pass@1 (greedy), pass@k, and the
        words and steps of each greedy response (cgd/evaluation/reasoning.py)."""
        if not self.metrics:
            self._not_run(reasoning.ITEM)
            return Shown()
        same = tables.compares_with_paper(self.cfg.student.model, "LLaMA3.1-8B Instruct")
        columns, rows = reasoning.table(self.metrics, self.cfg, self.reported, same)
        rows = self._ruled(rows, [c for c in columns if c not in ("words", "steps")])
        files = tables.write("reasoning", columns, rows, self.out)
        sampled = "sampled pass@k: " + (", ".join(self.cfg.eval.pass_at_k.benchmarks) or "off (eval.pass_at_k.benchmarks)")
        self._entry(reasoning.ITEM, files, f"done: {len(self.metrics)} evaluated models", sampled)
        return Shown([tables.to_frame(columns, rows)])

    def seeds(self) -> Shown:
        """Appendix A: each method's accuracy per seed, mean, sd and 95% t-interval."""
        frame = tables.seed_table(self.metrics)
        n_seeds = len(self.cfg.train.seeds)
        if frame.empty:
            self._not_run("Seeds (App. A)", "stage 06")
            return Shown()
        files = [self.out / "seeds.csv", self.out / "seeds.md"]
        io.write_text(files[0], frame.to_csv(index=False))
        io.write_text(files[1], frame.to_markdown(index=False) + "\n")
        self._entry("Seeds (App. A)", files, "done" if n_seeds >= 3 else f"partial: {n_seeds} seed(s)",
                    "train.seeds: [0, 1, 2] (the paper's three)")
        return Shown([frame])

    def graders(self, samples_dir: str) -> Shown:
        """Beyond the paper: every run's accuracy under our rule and the authors' harness rule, per
        benchmark, recounted from the samples, and the samples they disagree on."""
        samples = tables.load_eval_samples(samples_dir)
        table = graders.grader_table(samples)
        if table.empty:
            self._not_run(graders.ITEM, "stage 06 (it records both rules' verdicts on every sample)")
            return Shown(["not run: no sample graded under both rules"])
        listing = graders.disagreements(samples)
        files = [self.out / "graders.md", self.out / "graders.csv", self.out / "grader_disagreements.csv"]
        io.write_text(files[0], table.to_markdown(index=False) + "\n")
        io.write_text(files[1], table.to_csv(index=False))
        io.write_text(files[2], listing.to_csv(index=False))
        self._entry(graders.ITEM, files, f"done: tables report the {self.rule} rule (eval.grader); "
                    f"{len(listing)} of {int(table[table.run == graders.ALL_RUNS].samples.sum())} samples disagree")
        return Shown([table, listing])

    def accuracy_bars(self) -> Shown:
        """Fig. 2 (every method per benchmark) and Fig. 4 (CGD with vs without the critique)."""
        acc = figures.accuracy_frame(self.metrics)
        shown = Shown([acc])
        for item, stem, wanted, title in [
                ("Fig. 2", "fig2_methods", ["base", "sft", "distilled_sft", "cft", "cgd"], "Accuracy by method"),
                ("Fig. 4", "fig4_critique", ["cgd", "cgd_no_critique"], "CGD with vs without the critique")]:
            if acc.empty or not set(wanted[-2:]) & set(acc.method):
                self._not_run(item, "train and evaluate " + ", ".join(wanted))
                continue
            fig = figures.method_bars(acc, wanted, self._titled(title))
            self._entry(item, self._save(fig, stem), "done")
            shown.items.append(fig)
        return shown

    def training_loss(self, train_dir: str) -> Shown:
        """Fig. 8: per-step loss over normalized progress, CGD vs CFT (seed 0)."""
        curves = figures.training_curves(train_dir, ["cgd", "cft"])
        if curves.empty:
            self._not_run("Fig. 8", "train cgd and cft (stage 05)")
            return Shown()
        fig = figures.loss_plot(curves, "Training loss: CGD vs CFT")
        self._entry("Fig. 8", self._save(fig, "fig8_loss"), "done")
        return Shown([fig])

    def format_drift(self) -> Shown:
        """Share of answers that read as a critique, or commit to no final answer, per method."""
        drift = figures.drift_frame(self.metrics)
        if drift.empty:
            self._not_run("Format drift", "stage 06")
            return Shown([drift])
        fig = figures.drift_plot(drift, "Format drift by method")
        self._entry("Format drift", self._save(fig, "format_drift"), "done")
        return Shown([drift, fig])

    def appendix_c(self, diagnostics_file: str, diagnostics_dir: str) -> Shown:
        """Tables 9-11 and Figs. 9-11 from stage 08's probes."""
        cfg = self.cfg
        path = Path(diagnostics_file)
        if not path.exists():
            return Shown([f"not run: {diagnostics_file} is missing (dvc repro diagnostics)"])
        diag = io.read_json(path)
        row_set = diag.get("row_set") or {}
        note = (f"{diag['rows']} " + ("of this run's stage-04 rows, which the models trained on" if row_set.get("trained_on")
                                      else f"held-out {row_set.get('source')} rows")
                + " (diagnostics.*; paper: 500 held-out OpenMathInstruct-2 rows)")
        built = {"Table 9": ("table9", appendix_c.table9(diag, self.reported, cfg.figures.paper_model)),
                 "Table 10": ("table10", appendix_c.table10(diag, self.reported, cfg.figures.paper_model)),
                 "Table 11": ("table11", appendix_c.table11(diag))}
        entries, shown = {}, Shown()
        for item, (name, (columns, rows)) in built.items():
            rows = self.against_paper(rows)
            if item == "Table 11":  # answers graded by stage 08 with our rule (judge.is_correct)
                rows = tables.with_grader(rows, "committed")
            entries[item] = {"item": item, "files": [str(p) for p in tables.write(name, columns, rows, self.out)],
                             "status": "done", "enable": note}
            shown.items += [f"**{item}**", tables.to_frame(columns, rows)]
        npz = Path(diagnostics_dir) / "attention.npz"
        frame = figures.attention_frame(npz) if npz.exists() else None
        n = diag["attention"]["rows"]
        drawn = [] if frame is None else [
            ("Fig. 9", "fig9_attention_flow",
             figures.attention_flow(frame, f"CGD: attention by prompt section over generation ({n} rows, 95% CI)")),
            ("Fig. 10", "fig10_attention_by_layer", figures.attention_by_layer(frame, f"CGD: mean attention by layer ({n} rows)")),
            ("Fig. 11", "fig11_attention_phases",
             figures.attention_phases(frame, cfg.diagnostics.attention_phases, "CGD: attention by generation phase (%)"))]
        for item, stem, fig in drawn:
            entries[item] = {"item": item, "files": [str(p) for p in self._save(fig, stem)], "status": "done",
                             "enable": f"{n} rows, up to {cfg.diagnostics.attention_max_new_tokens} tokens (paper: 50 rows, 8192)"}
            shown.items.append(fig)
        fig = figures.counterfactual_bars(diag["table11_counterfactual"],
                                          "Factual vs counterfactual critiques (committed rule)")
        entries["Table 11"]["files"] += [str(p) for p in self._save(fig, "table11_counterfactual")]
        shown.items.append(fig)
        self.index.extend(entries.values())
        return shown

    def hyperparameters(self) -> Shown:
        """Table 5: this run's train.* beside the paper's values; Figs. 1 and 3 are diagrams of the method."""
        t5 = tables.table5(section(self.cfg, "train"), self.reported)
        files = [self.out / "table5.md", self.out / "table5.csv"]
        io.write_text(files[0], t5.to_markdown(index=False) + "\n")
        io.write_text(files[1], t5.to_csv(index=False))
        self._entry("Table 5", files, "done" if t5["same"].all() else
                    f"done: {int((~t5['same']).sum())} of {len(t5)} differ from the paper",
                    "the paper profiles (configs/profiles/) set the paper's values")
        for item in ("Fig. 1", "Fig. 3"):
            self._entry(item, [], "diagram (no data)", "the method itself: notebooks 02-05 (rollout, critique, refine, train)")
        return Shown([t5])

    def write_index(self) -> str:
        """figures/INDEX.md: every item above, and "not run" for the paper items nothing built."""
        cfg = self.cfg
        for item, enable in NOT_BUILT.items():
            if item not in {e["item"] for e in self.index}:
                self._entry(item, [], "not run", enable)
        self.index.sort(key=lambda e: (e["item"].split()[0] != "Table",
                                       float(e["item"].split()[-1].rstrip(".")) if e["item"][-1].isdigit() else 99))
        a = cfg.ablations
        ran_with = {"student.model": cfg.student.model, "teacher.model": cfg.teacher.model,
                    "data.source": cfg.data.source, "data.n_train": cfg.data.n_train, "train.methods": cfg.train.methods,
                    "train.seeds": cfg.train.seeds, "train.lr": cfg.train.lr, "train.epochs": cfg.train.epochs,
                    "eval.benchmarks": cfg.eval.benchmarks, "figures.paper_model": cfg.figures.paper_model,
                    "ablations.lr": f"{a.lr.methods} at {a.lr.values}",
                    "ablations.mixture": f"{a.mixture.method} at {a.mixture.incorrect_fractions}, {a.mixture.total} rows",
                    "ablations.teacher.teachers": list(a.teacher.teachers),
                    "ablations.epochs": f"{a.epochs.methods} over {a.epochs.epochs} epochs",
                    "ablations.flaw_source": f"{a.flaw_source.methods} on {list(a.flaw_source.sources)}",
                    "sweep_dirs": self.sweep_dirs}
        text = index_markdown(self.index, ran_with, provenance_groups(self.metrics))
        io.write_text(self.out / "INDEX.md", text)
        return text
