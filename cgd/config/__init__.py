"""Configuration: params.yaml's typed schema, loading with overrides, validation, paper profiles,
and the method registry.

Every stage calls `load()` before any heavy work; a problem raises `ParamsError` naming the dotted
key and the fix. Modules: schema (the dataclasses), keys (dotted-key helpers and overrides), coerce
(raw YAML to typed values), loading (`load`), validation (cross-field rules), methods (the registry
of compared methods), profiles (paper-profile overlays).

May import: cgd.runtime, cgd.data (for validation: the benchmark registry and the training sources).
"""

from cgd.config.coerce import build, mapping_keys, section
from cgd.config.keys import apply_overrides, assign, lookup
from cgd.config.loading import from_dict, load
from cgd.config.methods import TRAINED as METHODS
from cgd.config.schema import (
                               AblationsConfig,
                               DataConfig,
                               DiagnosticsConfig,
                               EvalConfig,
                               GeneralConfig,
                               GenerationConfig,
                               ModelConfig,
                               Params,
                               ParamsError,
                               RefineConfig,
                               TrainConfig,
)
from cgd.config.validation import (
                               LOCAL_BACKENDS,
                               STAGE_ROLES,
                               TEACHER_SECTIONS,
                               is_local_path,
                               matrix_items,
                               pipeline_outputs,
                               resolve_template,
                               role_key,
                               role_model,
                               validate,
)

__all__ = [
    "AblationsConfig", "DataConfig", "DiagnosticsConfig", "EvalConfig", "GeneralConfig", "GenerationConfig",
    "LOCAL_BACKENDS", "METHODS", "ModelConfig", "Params", "ParamsError", "RefineConfig", "STAGE_ROLES",
    "TEACHER_SECTIONS", "TrainConfig", "apply_overrides", "assign", "build", "from_dict", "is_local_path", "load",
    "lookup", "mapping_keys", "matrix_items", "pipeline_outputs", "resolve_template", "role_key", "role_model",
    "section", "validate",
]
