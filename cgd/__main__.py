"""`python -m cgd COMMAND`: validate params, apply a profile, convert the embedded model."""

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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except P.ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
