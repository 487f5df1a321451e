"""`python -m cgd COMMAND`: validate params, apply a profile, convert the embedded model, train,
sweep notebooks over a grid."""

from __future__ import annotations

import argparse
import json
import sys

from cgd import config as P


def _validate(args) -> int:
    cfg = P.load(args.params)
    print(f"{args.params}: ok (data.source={cfg.data.source}, student={cfg.student.model}, "
          f"teacher={cfg.teacher.model}, methods={','.join(cfg.train.methods)})")
    return 0


def _profile(args) -> int:
    from cgd.config.profiles import apply_profile

    changed = apply_profile(args.profile, args.params)
    print(f"applied {args.profile} to {args.params}: {len(changed)} value(s) changed")
    for key in changed:
        print(f"  {key}")
    return 0


def _convert(args) -> int:
    from cgd.data.assets import convert_embedded_model
    from cgd.runtime.io import write_json

    cfg = P.load(args.params)
    report = convert_embedded_model(cfg.embedded.model_dir, cfg.embedded.dtype)
    if args.metrics:
        from cgd.runtime.provenance import stamp

        write_json(args.metrics, stamp(report, {"converted": cfg.embedded.model_dir}))
    print(json.dumps(report, indent=2))
    return 0


def _cft_data(args) -> int:
    """Stage cft_data: WebInstruct-CFT's GPT-4o critiques as stage-04 rows for CFT* (cft_gpt4o);
    an empty file when train.methods does not train it, so the pipeline's shape never changes."""
    from cgd.data import sampling
    from cgd.runtime import io, provenance

    cfg = P.load(args.params)
    w = cfg.webinstruct_cft
    if "cft_gpt4o" not in cfg.train.methods:
        rows, report = [], {"off": "train.methods has no cft_gpt4o", "kept": 0}
    else:
        index = sampling.build_index(cfg.data.decontamination.benchmarks, cfg.data.decontamination.ngram,
                                     cfg.eval.hub_mirror, cfg.eval.hub_revisions)
        counts = sampling.CftReport(source=f"{w.hub_id or sampling.WEBINSTRUCT_CFT} {w.subset} {w.split}")
        rows = sampling.cft_rows(sampling.load_cft_critiques(w.hub_id, w.subset, w.split, w.revision), index,
                                 w.n_rows, cfg.seed, counts)
        report = counts.to_dict()
    io.write_jsonl(args.out, rows)
    io.write_json(args.metrics, provenance.stamp(report))
    print(json.dumps(report, indent=2))
    return 0


def _check_grading(args) -> int:
    """Each benchmark's round trip (cgd.evaluation.gradecheck): gold stated -> correct, another answer -> wrong.
    Our rule must reach --min-share; the authors' harness rule's figure is reported beside it."""
    from cgd.data import benchmarks
    from cgd.evaluation import gradecheck
    from cgd.grading.rules import Rules

    cfg = P.load(args.params)
    rules = Rules(cfg.eval.grading_timeout_s, cfg.eval.theoremqa_rel_tol)
    names = args.benchmarks.split(",") if args.benchmarks else list(cfg.eval.benchmarks)
    out, worst = {}, 1.0
    for name in names:
        problems, left_out = benchmarks.load_counted(name, args.hub_mirror or cfg.eval.hub_mirror,
                                                     cfg.eval.hub_revisions.get(name))
        result = gradecheck.round_trip(problems, rules)
        out[name] = {**result, "left_out": left_out}
        worst = min(worst, result["share"] if result["share"] is not None else 1.0)
        theirs = result["harness"]
        print(f"{name:14s} {result['as_expected']:5d}/{result['problems']:<5d} graded as they should "
              f"({100 * (result['share'] or 0):.2f}%; the authors' harness rule "
              f"{100 * (theirs['share'] or 0):.2f}%); left out {left_out or 0}")
        for f in result["failures"][:args.show]:
            print(f"    {f}")
    if args.out:
        from cgd.runtime import io

        io.write_json(args.out, out)
    return 0 if worst >= args.min_share else 1


def _rehearse(args) -> int:
    """A paper profile end to end on this machine: sizes shrunk, what it cannot have swapped."""
    from cgd.rehearsal import rehearse as rehearsal

    report = rehearsal.run(args.profile, args.scratch)
    print(f"rehearsal of {report['profile']}: {'ok' if report['ok'] else 'FAILED'} in "
          f"{report['total_seconds']:.0f} s (dvc repro exit {report['repro_rc']}); "
          f"not done: {', '.join(report['missing']) or 'none'}; report {report['scratch']}/rehearsal.json")
    for path, messages in report["generation_errors"].items():
        for message, n in messages.items():
            print(f"  generation errors in {path}: {n} x {message}")
    return 0 if report["ok"] else 1


def _diagnostic_set(args) -> int:
    from cgd.experiments import diagnostic_set

    report = diagnostic_set.build(args.params, args.out, args.metrics, kernel=args.kernel)
    print(json.dumps(report, indent=2))
    return 0


def _critique_quality(args) -> int:
    from cgd.evaluation import critique_quality

    result = critique_quality.run(args.params, args.critiques, args.out, args.metrics)
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=2))
    return 0


def _train(args) -> int:
    from cgd.training.train import train

    cfg = P.load(args.params, overrides=json.loads(args.overrides))
    metrics = train(cfg, args.method, args.seed, args.data, args.model_out, args.live_dir,
                    args.checkpoint_dir, args.snapshot_dir)
    print(json.dumps(metrics, indent=2))
    return 0


def _sweep_chain(args) -> tuple[tuple[str, ...], bool]:
    from cgd.experiments.sweeps import ABLATIONS

    if args.ablation:
        if args.ablation not in ABLATIONS:
            raise SystemExit(f"error: --ablation {args.ablation} is not one of {', '.join(ABLATIONS)}")
        ablation = ABLATIONS[args.ablation]
        return (tuple(args.chain.split(",")) if args.chain else ablation.chain,
                args.every_epoch or ablation.every_epoch)
    if not args.chain:
        raise SystemExit("error: give --chain (e.g. 05_train,06_eval) or --ablation")
    return tuple(args.chain.split(",")), args.every_epoch


def _sweep_point(args) -> int:
    import shutil

    from cgd.experiments import sweeps

    chain, every_epoch = _sweep_chain(args)
    result = sweeps.run_point(args.point, chain, sweeps.parse_assignments(args.set), args.params,
                              args.ablation, every_epoch, args.kernel, eval_dir=args.eval_dir)
    if args.metrics:  # DVC keeps metrics outside the cached point folder
        from pathlib import Path

        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f"{args.point}/metrics.json", args.metrics)
    print(f"{args.point}: {result['status']}")
    return 0


def _sweep(args) -> int:
    from cgd.experiments import sweeps

    chain, every_epoch = _sweep_chain(args)
    grid = sweeps.parse_assignments(args.grid, many=True)
    frame = sweeps.sweep(args.out, chain, grid, sweeps.parse_assignments(args.set), args.params,
                         args.ablation, every_epoch, args.kernel)
    print(frame.to_markdown(index=False))
    failed = frame["status"].str.startswith("failed").sum()
    print(f"{len(frame)} row(s) in {args.out}/summary.csv; {failed} failed")
    return 1 if failed else 0


def _server_command(args) -> int:
    """The vLLM server command a role's settings give: node 0's is what a vllm_server stage starts
    (on a free port it picks then; 8000 shown), node K's what the K-th other node runs."""
    import os
    import shlex

    from cgd.generation import vllm_server

    cfg = P.load(args.params)
    model = P.role_model(cfg, args.role)
    key = P.role_key(cfg, args.role)
    served = "student" if key == "student" else args.role  # the name stage 02 serves it under
    on_cpu = args.cpu
    try:
        if args.node_rank == 0:
            argv = vllm_server.server_command(model, cfg.seed, 8000, served, on_cpu)
        else:
            argv = vllm_server.node_command(model, cfg.seed, args.node_rank, on_cpu)
    except ValueError as exc:
        print(f"error: {key}.nodes is {model.nodes}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # head_address: $NAME with NAME unset
        print(f"error: {key}.{exc}", file=sys.stderr)
        return 2
    if args.exec:
        os.execv(argv[0], argv)
    print(shlex.join(argv))
    return 0


def _repro(args) -> int:
    from cgd.launch import repro

    return repro.run(args.dvc_args)


def _fidelity(args) -> int:
    from cgd.rehearsal import fidelity

    return fidelity.main(check=args.check)


def _stage_deps(args) -> int:
    from cgd.launch import stage_deps

    return stage_deps.main()


def _slurm(args) -> int:
    from cgd.launch import slurm

    job = slurm.job_for(args.profile, "rehearse" if args.rehearse else "run", args.nodes, partition=args.partition,
                        time=args.time, account=args.account, cpus_per_task=args.cpus_per_task,
                        hf_home=args.hf_home, offline=not args.online, logs=args.logs, scratch=args.scratch)
    path = slurm.write(job, args.out)
    if not args.submit:
        print(path.read_text(), end="")
    print(f"# written to {path}; submit with: sbatch {path}" if not args.submit else
          f"submitted {path}: job {slurm.submit(path)}", file=sys.stderr if not args.submit else sys.stdout)
    return 0


def _slurm_node(args) -> int:
    from cgd.launch import slurm

    return slurm.node_main(args.mode, args.profile, args.dry_run, args.scratch)


def _follow_server(args) -> int:
    """Node K of several: its headless share of every vLLM server the head's stages start."""
    import logging

    from cgd.generation import vllm_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        vllm_server.follow(args.node_rank, args.announce)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cgd")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="load and validate params.yaml, naming the first bad key")
    p.add_argument("params", nargs="?", default="params.yaml")
    p.set_defaults(run=_validate)
    p = sub.add_parser("profile", help="overlay a paper profile onto params.yaml")
    p.add_argument("profile")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(run=_profile)
    p = sub.add_parser("convert-model", help="convert the embedded GGUF into a plain HF folder")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--metrics", help="where to write the conversion report (JSON)")
    p.set_defaults(run=_convert)
    p = sub.add_parser("cft-data", help="WebInstruct-CFT's GPT-4o critiques as stage-04 rows (CFT*, cft_gpt4o)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="data/04_cft/cft_data.jsonl")
    p.add_argument("--metrics", default="metrics/04_cft_data.json")
    p.set_defaults(run=_cft_data)
    p = sub.add_parser("check-grading", help="each benchmark's grader on its own gold answers (round trip)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--benchmarks", help="comma-separated names; default eval.benchmarks")
    p.add_argument("--hub-mirror", help="a folder of hub datasets in the hub layout (default eval.hub_mirror)")
    p.add_argument("--min-share", type=float, default=0.995, help="exit 1 below this share on any benchmark")
    p.add_argument("--show", type=int, default=10, help="failures printed per benchmark")
    p.add_argument("--out", help="write the full report (JSON)")
    p.set_defaults(run=_check_grading)
    p = sub.add_parser("stage-deps", help="the cgd folders each dvc.yaml stage runs (its code deps), from its imports")
    p.set_defaults(run=_stage_deps)
    p = sub.add_parser("fidelity", help="write docs/fidelity.md: the paper profiles against the paper and the authors' release")
    p.add_argument("--check", action="store_true", help="exit 1 when docs/fidelity.md is stale instead of writing it")
    p.set_defaults(run=_fidelity)
    p = sub.add_parser("repro", help="dvc repro with warm kernels (make repro) and each stage's time")
    p.add_argument("dvc_args", nargs=argparse.REMAINDER, help="passed to dvc repro (e.g. -s rollout)")
    p.set_defaults(run=_repro)
    p = sub.add_parser("rehearse", help="run a paper profile end to end here: stand-in models, fixture data, small sizes")
    p.add_argument("profile", help="configs/profiles/NAME.yaml")
    p.add_argument("--scratch", help="the scratch copy of the repository (default rehearsals/NAME)")
    p.set_defaults(run=_rehearse)
    p = sub.add_parser("critique-quality", help="a judge scores stage 03's critiques (critique_quality)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--critiques", default="data/03_critique/critiques.jsonl")
    p.add_argument("--out", default="data/03_critique_quality")
    p.add_argument("--metrics", default="metrics/critique_quality.json")
    p.set_defaults(run=_critique_quality)

    p = sub.add_parser("diagnostic-set", help="the rows stage 08 probes (diagnostics.source), through stages 01-04")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="data/08_diagnostic_set")
    p.add_argument("--metrics", default="metrics/08_diagnostic_set.json")
    p.add_argument("--kernel", default="cgd", help="Jupyter kernel for papermill")
    p.set_defaults(run=_diagnostic_set)
    p = sub.add_parser("server-command", help="the vLLM server command of a role (backend vllm_server); "
                                              "--node-rank K --exec on the K-th other node of several")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--role", choices=["student", "teacher", "rollout"], required=True,
                   help="rollout: who writes y' (rollout.model, or the student where it is null)")
    p.add_argument("--node-rank", type=int, default=0, help="0: the head node (the stage's own); 1..nodes-1: the others")
    p.add_argument("--cpu", action="store_true", help="the CPU build's flags (no chunked prefill)")
    p.add_argument("--exec", action="store_true", help="run it (the other nodes), instead of printing it")
    p.set_defaults(run=_server_command)
    p = sub.add_parser("follow-server", help="on node K of several (backend vllm_server, <role>.nodes > 1): run "
                                             "this node's share of each server the head node's stages start")
    p.add_argument("--node-rank", type=int, required=True, help="1..nodes-1 (node 0 runs dvc repro)")
    p.add_argument("--announce", default="runs/vllm_server/head.json",
                   help="the head's announcement on the shared filesystem (default: the checkout's)")
    p.set_defaults(run=_follow_server)
    p = sub.add_parser("slurm", help="write (and with --submit submit) the sbatch script of a profile (docs/slurm.md)")
    p.add_argument("--profile", required=True, help="configs/profiles/NAME.yaml's NAME")
    p.add_argument("--nodes", type=int, help="default: the most nodes the profile's vLLM roles span")
    p.add_argument("--partition")
    p.add_argument("--time", help="Slurm's --time, e.g. 2-00:00:00")
    p.add_argument("--account")
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--hf-home", help="the hub cache the nodes share (exported as HF_HOME)")
    p.add_argument("--online", action="store_true", help="let the nodes reach the hub (default: HF_HUB_OFFLINE=1)")
    p.add_argument("--rehearse", action="store_true", help="a CPU rehearsal of the profile instead of the run")
    p.add_argument("--out", help="default runs/slurm/NAME.sbatch")
    p.add_argument("--logs", default="runs/slurm", help="where the job's log goes (%%x-%%j.out)")
    p.add_argument("--scratch", help="--rehearse: the scratch copy (default rehearsals/NAME)")
    p.add_argument("--submit", action="store_true", help="sbatch it (otherwise it is printed)")
    p.set_defaults(run=_slurm)
    p = sub.add_parser("slurm-node", help="inside a Slurm job: this task's part, by SLURM_PROCID (0 runs the pipeline)")
    p.add_argument("--mode", choices=["run", "rehearse"], default="run")
    p.add_argument("--profile", required=True)
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("--scratch", help="--mode rehearse: the scratch copy (default rehearsals/NAME)")
    p.set_defaults(run=_slurm_node)
    p = sub.add_parser("train", help="train one (method, seed) run; `accelerate launch -m cgd train` on GPUs")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--overrides", default="{}", help="JSON of dotted params keys to override")
    p.add_argument("--method", required=True, choices=P.METHODS)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--data", default="data/04_refine/cgd_data.jsonl")
    p.add_argument("--model-out", required=True)
    p.add_argument("--live-dir", required=True, help="DVCLive folder for per-step metrics")
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--snapshot-dir", help="keep the model after every epoch here (paper Fig. 6)")
    p.set_defaults(run=_train)
    for name, help_ in (("sweep", "run notebooks over a grid of params, one folder per point (papermill)"),
                        ("sweep-point", "run one point of a sweep into a folder (the ablate_* stages)")):
        p = sub.add_parser(name, help=help_)
        if name == "sweep":
            p.add_argument("out", help="folder of the sweep: one subfolder per point, summary.csv")
            p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                           help="a swept key and its values; repeat for a product grid")
        else:
            p.add_argument("point", help="the point's folder")
            p.add_argument("--metrics", help="also copy the point's metrics.json here")
            p.add_argument("--eval-dir", help="write the graded answers here instead of <point>/eval "
                                              "(the flaw-source points: under data/06_eval/, for stage 07's pairing)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed value: dotted keys override params.yaml, bare keys (method, seed, "
                            "teacher, model) are notebook parameters")
        p.add_argument("--chain", help="comma-separated steps, e.g. 05_train,06_eval")
        p.add_argument("--ablation", help="one of the paper's ablations (cgd/experiments/sweeps.py ABLATIONS): "
                                          "sets the chain and tags the points for figures")
        p.add_argument("--every-epoch", action="store_true", help="evaluate the model after every epoch")
        p.add_argument("--params", default="params.yaml")
        p.add_argument("--kernel", default="cgd", help="Jupyter kernel for papermill")
        p.set_defaults(run=_sweep if name == "sweep" else _sweep_point)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["repro"]:  # everything after it is dvc repro's (options included)
        args = parser.parse_args(["repro"])
        args.dvc_args = argv[1:]
    else:
        args = parser.parse_args(argv)
    try:
        return args.run(args)
    except P.ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
