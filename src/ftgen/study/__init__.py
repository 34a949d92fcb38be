"""The study: one owner for its shape (config, plan, paths, params, resources).

from ftgen.study import Study, load_yaml
study = Study(load_yaml("config/studies/smoke.yaml"), source="config/studies/smoke.yaml")
study.paths.scores("tiny", "base", "nli_a", 0, 0)    # where a cell's scores are
study.eval_params("nli_a", 0, 0)                     # what its evaluate job receives
"""

from .core import Study, check_config, load_studies
from .paths import Paths
from .plan import BASE, EvalCell, FineTune, wildcard_constraints
from .schema import REPO_ROOT, ConfigError, deep_merge, load_yaml, validate_schema, with_defaults
from .targets import as_json

__all__ = [
    "BASE",
    "REPO_ROOT",
    "ConfigError",
    "EvalCell",
    "FineTune",
    "Paths",
    "Study",
    "as_json",
    "check_config",
    "deep_merge",
    "load_studies",
    "load_yaml",
    "validate_schema",
    "wildcard_constraints",
    "with_defaults",
]
