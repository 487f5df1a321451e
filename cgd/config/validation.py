"""Rules that span fields of params.yaml, checked before any heavy work.

Besides the fields themselves, a rule may read dvc.yaml (which models a stage builds), the
benchmark registry (cgd.data.benchmarks) and the training sources (cgd.data.sampling.SOURCES).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import yaml

from cgd.config.coerce import build
from cgd.config.keys import apply_overrides, lookup
from cgd.config.methods import TRAINED as METHODS
from cgd.config.schema import ModelConfig, Params, ParamsError

# ---------------------------------------------------------------- cross-field rules

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_local_path(ref: str) -> bool:
    """Local folders are absolute, explicitly relative, or under models/; `org/name` is a hub id."""
    return (ref.startswith(("/", "./", "../", "~", "models/")) or not HUB_ID.match(ref)
            or Path(ref).exists())


_TEMPLATE = re.compile(r"\$\{([\w.]+)\}")


def resolve_template(text: str, raw: dict) -> str:
    """Fill dvc.yaml's ${section.key} references from the raw params, as DVC does."""
    return _TEMPLATE.sub(lambda match: str(lookup(raw, match.group(1))), text)


def matrix_items(stage: dict, raw: dict) -> list[dict]:
    """The `item` mappings of a dvc.yaml `matrix` stage (one empty item for a plain stage)."""
    matrix = stage.get("matrix")
    if not matrix:
        return [{}]
    axes = {}
    for key, values in matrix.items():
        if isinstance(values, str):  # "${train.methods}": a list from params
            values = lookup(raw, _TEMPLATE.fullmatch(values).group(1))
        axes[key] = values
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def pipeline_outputs(raw: dict, dvc_yaml: str | Path = "dvc.yaml") -> set[str]:
    """Paths that some dvc.yaml stage produces (templates and matrix items resolved), so
    validation can accept a model not yet built."""
    path = Path(dvc_yaml)
    if not path.exists():
        return set()
    outs = set()
    for stage in (yaml.safe_load(path.read_text()) or {}).get("stages", {}).values():
        for item in matrix_items(stage, raw):
            for out in stage.get("outs", []):
                text = next(iter(out)) if isinstance(out, dict) else str(out)
                outs.add(resolve_template(text, {**raw, "item": item}))
    return outs


def _check_model(key: str, ref: str, produced: set[str]) -> None:
    if not is_local_path(ref):
        return  # hub id: resolved by transformers / vLLM at paper scale
    path = Path(ref).expanduser()
    if ref.rstrip("/") in produced and not path.exists():
        return  # a stage builds it before it is loaded
    if not path.exists():
        raise ParamsError(
            key,
            f"points to '{ref}', which does not exist and no dvc.yaml stage produces",
            "give an existing HF model folder, a hub id such as meta-llama/Llama-3.1-8B-Instruct, "
            "or run `dvc repro convert_model` for the embedded model",
        )
    if not (path / "config.json").is_file():
        raise ParamsError(key, f"points to '{ref}', which has no config.json: transformers and vLLM cannot "
                          "load it as a model", "give a Hugging Face model folder (config.json, weights, "
                          "tokenizer) or a hub id; the embedded GGUF is converted by `dvc repro convert_model`")


# Which model each generating stage loads: the rollout's author (the student unless rollout.model
# is set), the teacher, and the student being evaluated.
STAGE_ROLES = (("rollout", "rollout"), ("critique", "teacher"), ("refine", "teacher"), ("eval.generation", "student"))
LOCAL_BACKENDS = ("transformers", "vllm", "vllm_server")  # backend openai: the endpoint's name, not a path


def role_model(params: Params, role: str) -> ModelConfig:
    """A role's model settings: student, teacher, rollout (who writes y': rollout.model, else the
    student) or judge (who scores critiques: critique_quality.model, else the teacher)."""
    if role == "rollout":
        return params.rollout.model or params.student
    if role == "judge":
        return params.critique_quality.model or params.teacher
    return getattr(params, role)


def role_key(params: Params, role: str) -> str:
    """The params key holding a role's model settings (rollout.model, critique_quality.model where set)."""
    if role == "rollout":
        return "student" if params.rollout.model is None else "rollout.model"
    if role == "judge":
        return "teacher" if params.critique_quality.model is None else "critique_quality.model"
    return role


def _check_engine(m: ModelConfig, key: str, stages: list[tuple[str, str]], produced: set[str]) -> None:
    """One model's settings against the backends of the stages that load it; `key` names it."""
    for stage, backend in stages:
        if backend == "vllm" and m.data_parallel_size > 1:
            raise ParamsError(f"{key}.data_parallel_size", f"is {m.data_parallel_size}, but {stage}.backend is vllm, "
                              "one in-process engine (vLLM's offline LLM refuses data parallelism for dense models)",
                              f"set {stage}.backend: vllm_server (vLLM's server, started by the stage), or 1")
    if m.data_parallel_size % m.nodes:
        raise ParamsError(f"{key}.nodes", f"is {m.nodes}, which does not divide {key}.data_parallel_size "
                          f"({m.data_parallel_size}): each node runs the same number of replicas",
                          f"set {key}.data_parallel_size to a multiple of {m.nodes}")
    if m.nodes > 1 and not m.head_address:
        raise ParamsError(f"{key}.head_address", f"is null, but {key}.nodes is {m.nodes}",
                          "give the head node's address that the other nodes reach (e.g. 10.0.0.1), "
                          "or $NAME to read it from an environment variable (e.g. $MASTER_ADDR)")
    if m.head_address and m.head_address.startswith("$") and not m.head_address[1:].isidentifier():
        raise ParamsError(f"{key}.head_address", f"is {m.head_address!r}: after '$' comes an environment "
                          "variable's name", "write e.g. $MASTER_ADDR, or the address itself")
    if any(backend in LOCAL_BACKENDS for _, backend in stages):
        _check_model(f"{key}.model", m.model, produced)


def _engines(params: Params) -> dict[str, tuple[ModelConfig, list[tuple[str, str]]]]:
    """params key -> (model settings, the (stage, backend) pairs that load them)."""
    out: dict[str, tuple[ModelConfig, list[tuple[str, str]]]] = {
        "student": (params.student, []), "teacher": (params.teacher, [])}
    roles = STAGE_ROLES + ((("critique_quality", "judge"),) if params.critique_quality.rows else ())
    for stage, role in roles:
        backend = params.eval.generation.backend if stage == "eval.generation" else getattr(params, stage).backend
        out.setdefault(role_key(params, role), (role_model(params, role), []))[1].append((stage, backend))
    return out


def validate(params: Params, raw: dict, dvc_yaml: str | Path = "dvc.yaml") -> None:
    produced = pipeline_outputs(raw, dvc_yaml)
    if isinstance(raw.get("rollout", {}).get("model"), dict) and not raw["rollout"]["model"]:
        raise ParamsError("rollout.model", "is an empty mapping", "give the student.* keys that differ "
                          "(e.g. {model: meta-llama/Llama-3.2-3B-Instruct}), or null for the student's own answers")
    if isinstance(raw.get("critique_quality", {}).get("model"), dict) and not raw["critique_quality"]["model"]:
        raise ParamsError("critique_quality.model", "is an empty mapping", "give the teacher.* keys that differ "
                          "(e.g. {model: meta-llama/Llama-3.3-70B-Instruct}), or null for the teacher")
    if params.critique_quality.rows and params.critique_quality.rows < 2:
        raise ParamsError("critique_quality.rows", f"is {params.critique_quality.rows}; half are judged on wrong "
                          "answers and half on right ones", "give at least 2 (paper: 20000), or 0 for off")
    if params.critique_quality.rubric_file is not None and not Path(params.critique_quality.rubric_file).is_file():
        raise ParamsError("critique_quality.rubric_file", f"is {params.critique_quality.rubric_file}, which is not a "
                          "file", "give a YAML file with version, system and user, or null for the built-in rubric")
    for key, (m, stages) in _engines(params).items():
        _check_engine(m, key, stages, produced)
    t = params.train
    if not t.methods:
        raise ParamsError("train.methods", "is empty", f"list one or more of {', '.join(METHODS)}")
    if len(set(t.methods)) != len(t.methods):
        raise ParamsError("train.methods", "lists a method twice", "remove the duplicate")
    if not t.seeds:
        raise ParamsError("train.seeds", "is empty", "list at least one seed, e.g. [0]")
    d = params.diagnostics
    untrained = [m for m in d.models or [] if m != "base" and m not in t.methods]
    if untrained:
        raise ParamsError("diagnostics.models", f"lists {', '.join(untrained)}, not in train.methods",
                          "probe only base and trained methods")
    if "cgd" not in t.methods:
        raise ParamsError("diagnostics", "probes the CGD model, but train.methods has no cgd",
                          "add cgd to train.methods")
    if d.source in ("gsm8k", "math") and d.hub_id is not None:
        raise ParamsError("diagnostics.hub_id", f"is set, but diagnostics.source '{d.source}' is embedded",
                          "set it to null, or pick a hub source such as openmathinstruct2")
    if d.attention_rows > d.rows or d.counterfactual_rows > d.rows:
        raise ParamsError("diagnostics.attention_rows" if d.attention_rows > d.rows
                          else "diagnostics.counterfactual_rows", f"exceeds diagnostics.rows ({d.rows})",
                          "they are drawn from the diagnostic rows: lower it or raise diagnostics.rows")
    if t.per_device_batch_size == "auto":
        if t.tokens_per_device_batch is None:
            raise ParamsError("train.tokens_per_device_batch", "is null, but train.per_device_batch_size is auto",
                              "give the token budget of a device's micro-batch (e.g. 2 x max_length), "
                              "or set per_device_batch_size to a row count")
    elif t.global_batch_size % t.per_device_batch_size:
        raise ParamsError(
            "train.global_batch_size",
            f"({t.global_batch_size}) is not a multiple of train.per_device_batch_size "
            f"({t.per_device_batch_size})",
            "make the global batch a multiple of the per-device batch",
        )
    if t.padding_free is True and t.overlong == "truncate":
        raise ParamsError("train.padding_free", "is true, but train.overlong is truncate: TRL cuts no record "
                          "of a padding-free batch", "set train.overlong: drop, or padding_free: auto "
                          "(off under truncate)")
    if t.deepspeed is not None and not Path(t.deepspeed).exists():
        raise ParamsError("train.deepspeed", f"points to '{t.deepspeed}', which does not exist",
                          "give a file under configs/accelerate/ or null")
    from cgd.data import benchmarks  # local import: benchmarks imports nothing heavy, but params stays leaf

    known = benchmarks.names()
    for key, names in (("data.decontamination.benchmarks", params.data.decontamination.benchmarks),
                       ("eval.benchmarks", list(params.eval.benchmarks))):
        for name in names:
            if name not in known:
                raise ParamsError(f"{key}", f"names unknown benchmark '{name}'",
                                  f"use one of {', '.join(known)}")
    e = params.eval
    if e.generation.backend == "reference":
        raise ParamsError("eval.generation.backend", "is 'reference', which only critiques and refines",
                          "use transformers, vllm or openai to generate the models' answers")
    for name in e.pass_at_k.benchmarks:
        if name not in e.benchmarks:
            raise ParamsError("eval.pass_at_k.benchmarks", f"names '{name}', which eval.benchmarks lacks",
                              f"add {name} to eval.benchmarks or remove it here")
    if e.pass_at_k.benchmarks:
        too_big = [k for k in e.pass_at_k.k if k < 1 or k > e.pass_at_k.n]
        if too_big or not e.pass_at_k.k:
            raise ParamsError("eval.pass_at_k.k", f"is {e.pass_at_k.k}; every k must be in 1..n "
                              f"(n = {e.pass_at_k.n})", "raise eval.pass_at_k.n or drop the larger k")
    for key, path in (("eval.hub_mirror", e.hub_mirror), ("eval.general.include_path", e.general.include_path)):
        if path is not None and not Path(path).is_dir():
            raise ParamsError(key, f"points to '{path}', which is not a folder", "give a folder, or null")
    hub_names = [n for n in known if benchmarks.REGISTRY[n].hub_id]
    for name, rev in e.hub_revisions.items():
        if name not in hub_names:
            raise ParamsError(f"eval.hub_revisions.{name}", "is not a hub benchmark",
                              f"pin one of {', '.join(hub_names)} (embedded sets have no revision)")
    for key, rev in [("data.revision", params.data.revision), ("webinstruct_cft.revision", params.webinstruct_cft.revision),
                     ("diagnostics.revision", params.diagnostics.revision),
                     *((f"eval.hub_revisions.{n}", r) for n, r in e.hub_revisions.items())]:
        if rev is not None and (not isinstance(rev, str) or not rev.strip() or rev != rev.strip()):
            raise ParamsError(key, f"is {rev!r}", "give the dataset's commit hash (or a tag) as a string, or null")
    from cgd.data.sampling import SOURCES

    for key, source, rev in (("data.revision", params.data.source, params.data.revision),
                             ("diagnostics.revision", params.diagnostics.source, params.diagnostics.revision)):
        if rev is not None and (source not in SOURCES or SOURCES[source].hub_id is None):
            raise ParamsError(key, f"is set, but the source '{source}' is not read from the hub", "set it to null")
    for name, n in params.eval.benchmarks.items():
        if n is not None and n < 1:
            raise ParamsError(f"eval.benchmarks.{name}", f"is {n}, out of range: must be >= 1",
                              "use a positive sample size, or null for every problem")
    missing = [b for b in params.eval.benchmarks if b not in params.data.decontamination.benchmarks]
    if missing:
        raise ParamsError(
            "data.decontamination.benchmarks",
            f"lacks evaluated benchmark(s) {', '.join(missing)}",
            "add them, or training rows that overlap the test set could inflate their scores",
        )
    if params.data.source == "webinstruct_conversations" and params.data.hub_id is None:
        raise ParamsError("data.hub_id", "is null, but data.source webinstruct_conversations reads a local "
                          "export in the release's conversations layout, which no hub dataset has",
                          "set data.hub_id to the folder holding the export (JSON or JSONL), or use source webinstruct")
    if params.rollout.backend == "reference":
        raise ParamsError("rollout.backend", "is 'reference', which only critiques and refines",
                          "use transformers, vllm or openai for the student's answers")
    for stage in ("rollout", "critique", "refine"):
        prompt_file = getattr(params, stage).prompt_file
        if prompt_file is not None and not Path(prompt_file).exists():
            raise ParamsError(f"{stage}.prompt_file", f"points to '{prompt_file}', which does not exist",
                              "give a template file, or null for the built-in prompt")
    for role in ("student", "teacher"):
        pattern = getattr(params, role).answer_after
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ParamsError(f"{role}.answer_after", f"is not a regular expression ({exc})",
                                  "e.g. answer\\s+Answer, or null") from None
    if params.eval.checkpoint.select != "final" and params.train.snapshot_steps is None:
        raise ParamsError("eval.checkpoint.select", f"is {params.eval.checkpoint.select!r} but train.snapshot_steps "
                          "is null, so a run saves only its final model", "set train.snapshot_steps (e.g. 200) or select final")
    for name, shots in params.eval.num_shots.items():
        if name not in params.eval.benchmarks:
            raise ParamsError(f"eval.num_shots.{name}", "names a benchmark eval.benchmarks does not evaluate",
                              "list shots for evaluated benchmarks only")
        if shots < 0:
            raise ParamsError(f"eval.num_shots.{name}", f"is {shots}; must be >= 0")
        if shots and params.eval.prompt_type == "ours":
            raise ParamsError(f"eval.num_shots.{name}", f"is {shots} but eval.prompt_type is ours (zero-shot chat)",
                              "use a release prompt type (cot for base models) or set the shots to 0")
    if params.eval.prompt_type != "ours" and params.eval.generation.backend == "openai":
        raise ParamsError("eval.prompt_type", f"is {params.eval.prompt_type!r}, a raw text prompt, but "
                          "eval.generation.backend is openai, which sends chat messages",
                          "use ours with an API model, or a local backend (vllm, vllm_server, transformers)")
    if params.refine.mixture_total is not None and params.refine.incorrect_fraction is None:
        raise ParamsError("refine.mixture_total", "is set but refine.incorrect_fraction is null",
                          "set a fraction (e.g. 0.5) or set mixture_total to null")
    if not params.figures.formats:
        raise ParamsError("figures.formats", "is empty", "list at least one of png, pdf, svg")
    _validate_ablations(params, raw, produced)


# The sections a teacher ablation may change: it reruns stages 03-04 and nothing else differs.
TEACHER_SECTIONS = ("teacher", "critique", "refine")
POINT_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][\w-]*$")  # a source names a params key (no '.')


def _validate_ablations(params: Params, raw: dict, produced: set[str]) -> None:
    a = params.ablations
    for key, values in (("ablations.lr.methods", a.lr.methods), ("ablations.lr.values", a.lr.values),
                        ("ablations.mixture.incorrect_fractions", a.mixture.incorrect_fractions),
                        ("ablations.epochs.methods", a.epochs.methods),
                        ("ablations.flaw_source.methods", a.flaw_source.methods),
                        ("ablations.critique_content.methods", a.critique_content.methods),
                        ("ablations.critique_content.variants", a.critique_content.variants)):
        if len(set(values)) != len(values):
            raise ParamsError(key, f"lists a value twice ({values})", "remove the duplicate")
    for i, lr in enumerate(a.lr.values):
        if lr <= 0:
            raise ParamsError(f"ablations.lr.values[{i}]", f"is {lr}; a learning rate must be > 0")
    if a.lr.values and not a.lr.methods:
        raise ParamsError("ablations.lr.methods", "is empty while ablations.lr.values is set",
                          "list the methods to sweep (paper: [cgd, cft]) or set values to []")
    for i, frac in enumerate(a.mixture.incorrect_fractions):
        if not 0.0 <= frac <= 1.0:
            raise ParamsError(f"ablations.mixture.incorrect_fractions[{i}]", f"is {frac}; must be in 0..1",
                              "give shares of incorrect answers, e.g. [0.0, 0.25, 0.5, 0.75, 1.0]")
    for name, overrides in a.teacher.teachers.items():
        if not POINT_NAME.match(name):
            raise ParamsError(f"ablations.teacher.teachers.{name}", "is not a usable folder name",
                              "use letters, digits, '.', '-' or '_', e.g. s1.1-32b")
        if not isinstance(overrides, dict) or not overrides:
            raise ParamsError(f"ablations.teacher.teachers.{name}", f"is {overrides!r}; expected a mapping "
                              "of dotted keys", "e.g. {teacher.model: simplescaling/s1.1-32B}")
        for dotted in overrides:
            if str(dotted).split(".")[0] not in TEACHER_SECTIONS:
                raise ParamsError(f"ablations.teacher.teachers.{name}.{dotted}",
                                  "changes more than the teacher",
                                  f"only {', '.join(s + '.*' for s in TEACHER_SECTIONS)} keys may differ")
        try:  # the teacher's settings must be valid params themselves
            built = build(apply_overrides(raw, overrides))
        except ParamsError as exc:
            raise ParamsError(f"ablations.teacher.teachers.{name}", f"sets an invalid value: {exc}") from exc
        if {built.critique.backend, built.refine.backend} & set(LOCAL_BACKENDS):  # not an API's model name
            _check_model(f"ablations.teacher.teachers.{name}.teacher.model", built.teacher.model, produced)
    _validate_flaw_sources(params, raw, produced)
    _validate_critique_content(params)


def _validate_critique_content(params: Params) -> None:
    cc = params.ablations.critique_content
    if not cc.variants:
        return
    if not cc.methods:
        raise ParamsError("ablations.critique_content.methods", "is empty while ablations.critique_content.variants "
                          "is set", "list the methods to retrain (the paper: [cgd]), or set variants to []")
    for method in cc.methods:
        if method != "cgd":
            raise ParamsError("ablations.critique_content.methods", f"lists {method}, which does not read the "
                              "critique in its input: replacing it tests nothing", "list cgd only")
        if method not in params.train.methods:
            raise ParamsError("ablations.critique_content.methods", f"lists {method}, which train.methods lacks: "
                              "the main run is condition A, the point every variant is compared with",
                              f"add {method} to train.methods, or remove it here")
    # its content (a `text` with no verdict) is checked where it is read: cgd/distill/critique_content.py
    if "generic" in cc.variants and cc.generic_file is not None and not Path(cc.generic_file).is_file():
        raise ParamsError("ablations.critique_content.generic_file", f"is {cc.generic_file}, which is not a file",
                          "give a YAML file with `text` and `version`, or null for the built-in one")


# Methods whose training data hold no y' and nothing that follows from it: a flaw source cannot change them.
NOT_FROM_YPRIME = {"sft": "trains on the reference solutions", "cft_gpt4o": "trains on WebInstruct-CFT's GPT-4o critiques"}


def _validate_flaw_sources(params: Params, raw: dict, produced: set[str]) -> None:
    fs = params.ablations.flaw_source
    if not fs.sources:
        return
    if not fs.methods:
        raise ParamsError("ablations.flaw_source.methods", "is empty while ablations.flaw_source.sources is set",
                          "list the methods to train on each source's data (e.g. [cgd]), or set sources to {}")
    for method in fs.methods:
        if method in NOT_FROM_YPRIME:
            raise ParamsError("ablations.flaw_source.methods", f"lists {method}, which {NOT_FROM_YPRIME[method]}: "
                              "who wrote y' cannot change it", "list methods that train on y' or the teacher's "
                              "outputs: cgd, cgd_no_critique, cft, distilled_sft")
        if method not in params.train.methods:
            raise ParamsError("ablations.flaw_source.methods", f"lists {method}, which train.methods lacks: the "
                              "student's own rollouts are the main run's, the point every source is compared with",
                              f"add {method} to train.methods, or remove it here")
    if params.rollout.model is not None:
        raise ParamsError("rollout.model", "is set while ablations.flaw_source.sources is on: the main run must be "
                          "the student's own rollouts, the point every source is compared with",
                          "set rollout.model: null, or ablations.flaw_source.sources: {}")
    for name, spec in fs.sources.items():
        key = f"ablations.flaw_source.sources.{name}"
        if not SOURCE_NAME.match(name) or name == "student":
            raise ParamsError(key, "is not a usable source name" + (
                " ('student' is the main run)" if name == "student" else
                ": its stages declare the params key ablations.flaw_source.sources.<name>, and DVC reads a '.' there "
                "as one more level" if "." in name else ""), "use letters, digits, '-' or '_', e.g. llama-3b")
        if not isinstance(spec, dict) or not spec:
            raise ParamsError(key, f"is {spec!r}; expected the student.* keys that differ",
                              "e.g. {model: meta-llama/Llama-3.2-3B-Instruct}")
        try:  # the source's settings are valid rollout.model settings
            source = build(apply_overrides(raw, {"rollout.model": spec})).rollout.model
        except ParamsError as exc:
            inner = exc.key.removeprefix("rollout.model") if exc.key.startswith("rollout.model") else f" ({exc.key})"
            raise ParamsError(key + inner, str(exc).split(f"'{exc.key}' ", 1)[-1]) from exc
        _check_engine(source, key, [("rollout", params.rollout.backend)], produced)
