"""`python -m cgd COMMAND`: validate params, apply a profile, convert the embedded model, train."""

from __future__ import annotations

import argparse
import json
import sys

from cgd import params as P


def _validate(args) -> int:
    cfg = P.load(args.params)
    print(f"{args.params}: ok (data.source={cfg.data.source}, student={cfg.student.model}, "
          f"teacher={cfg.teacher.model}, methods={','.join(cfg.train.methods)})")
    return 0


def _profile(args) -> int:
    from cgd.profiles import apply_profile

    changed = apply_profile(args.profile, args.params)
    print(f"applied {args.profile} to {args.params}: {len(changed)} value(s) changed")
    for key in changed:
        print(f"  {key}")
    return 0


def _convert(args) -> int:
    from cgd.assets import convert_embedded_model

    from cgd.io import write_json

    cfg = P.load(args.params)
    report = convert_embedded_model(cfg.embedded.model_dir, cfg.embedded.dtype)
    if args.metrics:
        write_json(args.metrics, report)
    print(json.dumps(report, indent=2))
    return 0


def _train(args) -> int:
    from cgd.train import train

    cfg = P.load(args.params, overrides=json.loads(args.overrides))
    metrics = train(cfg, args.method, args.seed, args.data, args.model_out, args.live_dir,
                    args.checkpoint_dir)
    print(json.dumps(metrics, indent=2))
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
    p = sub.add_parser("train", help="train one (method, seed) run; `accelerate launch -m cgd train` on GPUs")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--overrides", default="{}", help="JSON of dotted params keys to override")
    p.add_argument("--method", required=True, choices=P.METHODS)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--data", default="data/04_refine/cgd_data.jsonl")
    p.add_argument("--model-out", required=True)
    p.add_argument("--live-dir", required=True, help="DVCLive folder for per-step metrics")
    p.add_argument("--checkpoint-dir", required=True)
    p.set_defaults(run=_train)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except P.ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
