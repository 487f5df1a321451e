#!/usr/bin/env bash
# `make gpu-kit`: prepare .gpu/ in the project root (git-ignored) for an offline GPU machine: the wheels its image
# lacks, the demo model's tokenizer (no weights: gpu-check makes random weights in a named shape) and
# stage-04 records. The image has Python 3.12, torch 2.11+cu130, transformers 5.17, accelerate 1.15,
# tokenizers, safetensors, pandas, pyarrow, numpy, triton; not trl, datasets, dvclive, deepspeed,
# math-verify. About 30 MB in all. vLLM (hundreds of MB, with its own torch) cannot travel this way.
# Run from the project root after `make repro` has converted the model (the deepspeed wheel is built
# with .venv's torch). Then carry the checkout with .gpu and run `make gpu-check` there (README, Check a GPU).
set -euo pipefail
mkdir -p .gpu/whl .gpu/tokenizer
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
   --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
   --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/whl"
pin() { .venv/bin/pip freeze 2>/dev/null | grep -i "^$1==" | head -1; }
names="trl datasets transformers dvclive dvc dvc-data dvc-http dvc-objects dvc-render dvc-studio-client
       atpublic chardet configobj dill diskcache dpath dulwich flatten-dict flufl.lock funcy httpcore2 httpx2
       multiprocess orjson pydot pygtrie pytz ruamel.yaml scmrepo sqltrie truststore voluptuous wcwidth
       zc.lockfile pydantic pydantic_core annotated-types typing-inspection math-verify
       latex2sympy2_extended platformdirs hjson msgpack"
specs=""; for n in $names; do s=$(pin "$n"); [ -n "$s" ] && specs="$specs $s"; done
# liger-kernel: the version measured on the H200 (../shared/gpu/README.md)
python3 -m pip download -q $P $specs liger-kernel==0.8.5
.venv/bin/pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3
DS=$(pin deepspeed || true); DS=${DS:-deepspeed==0.19.8}
DS_BUILD_OPS=0 .venv/bin/pip wheel -q --no-deps --no-build-isolation -w .gpu/whl "$DS"
M=models/smollm2-135m-instruct
cp $M/config.json $M/generation_config.json $M/tokenizer.json $M/tokenizer_config.json $M/chat_template.jinja .gpu/tokenizer/
cp data/04_refine/cgd_data.jsonl .gpu/cgd_data.jsonl
# The demo's stage 04 keeps few complete rows; repeat them so a run takes enough steps to time.
.venv/bin/python - <<'PY'
import json
rows = [json.loads(l) for l in open(".gpu/cgd_data.jsonl")]
ok = [r for r in rows if r["status"] == "ok" and r["in_mixture"]] or rows
with open(".gpu/cgd_data.jsonl", "w") as f:
    for k in range(max(1, 512 // max(len(ok), 1))):
        for r in ok:
            f.write(json.dumps({**r, "id": f"{r['id']}#{k}", "status": "ok", "in_mixture": True}) + "\n")
PY
du -sh .gpu
