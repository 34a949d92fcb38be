"""Config files as data: strict YAML, schema validation that names the file and field, and the
schema's `default:` values filled in (the schemas in config/schema/ are the only place a default
is written)."""

from __future__ import annotations

import copy
import difflib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..step import UsageError

REPO_ROOT = Path(__file__).resolve().parents[3]
REGISTRY_DIR = REPO_ROOT / "config" / "registry"
SCHEMA_DIR = REPO_ROOT / "config" / "schema"


class ConfigError(UsageError):
    """A study config that cannot run; the message names the file and the field."""


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml.safe_load, except that a key written twice in one mapping is an error (PyYAML keeps
    the last one silently: `datasets: {a: ..., a: ...}` would drop the first dataset)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the constructor reports it
                    continue
                mark = key_node.start_mark
                if first is not None:
                    at = f"line {first[0]}" + (
                        f", column {first[1]}; this one at column {mark.column + 1}"
                        if first[0] == mark.line + 1
                        else ""
                    )
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at {at}); YAML would keep only the last one "
                        "and silently ignore the other",
                        mark,
                    )
                seen[key] = (mark.line + 1, mark.column + 1)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict:
    """A config file (study, registry, schema) as a dict: duplicate keys, YAML syntax errors, an
    empty file or a top level that is not a mapping are ConfigErrors naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.load(fh, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            if str(exc.problem).startswith("duplicate key"):
                raise ConfigError(f"{where}: {exc.problem}") from None
            context = exc.context or ""
            if context and exc.context_mark is not None and exc.context_mark.line != getattr(mark, "line", None):
                context += f" (line {exc.context_mark.line + 1})"
            what = ": ".join(x for x in (context, exc.problem) if x)
            raise ConfigError(f"{where}: invalid YAML: {what}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{path}: file is empty (expected a mapping of config keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of config keys at the top level, got a {type(data).__name__}")
    return data


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge `override` into a copy of `base` (lists and scalars are replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@cache
def load_schema(schema_name: str) -> dict:
    return load_yaml(SCHEMA_DIR / schema_name)


@cache
def _validator(schema_name: str, definition: str | None = None, required: tuple[str, ...] = ()):
    """One compiled validator per schema file (or one of its `$defs`) and process: a study
    validates every task and asset of the registries (18 validations for one study, 54 when
    three are planned together)."""
    import jsonschema

    schema = load_schema(schema_name)
    if definition is not None:  # e.g. a registry dataset entry against config.schema.yaml#/$defs/dataset
        schema = {
            "$schema": schema["$schema"],
            "$defs": schema["$defs"],
            "$ref": f"#/$defs/{definition}",
            **({"required": list(required)} if required else {}),
        }
    return jsonschema.Draft202012Validator(schema)


def schema_keys(schema: dict, root: dict, depth: int = 0) -> set[str]:
    """The keys a (sub)schema declares, through its local `$ref`s and `allOf`s."""
    keys = set(schema.get("properties", {}))
    if depth > 8:
        return keys
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        keys |= schema_keys(root["$defs"][ref.split("/")[-1]], root, depth + 1)
    for sub in schema.get("allOf", []):
        keys |= schema_keys(sub, root, depth + 1)
    return keys


def _schema_error_lines(err, root: dict, prefix: str) -> list[str]:
    path = [prefix] if prefix else []
    path += [str(p) for p in err.absolute_path]
    field = ".".join(path) or "<top level>"
    title = err.schema.get("title") if isinstance(err.schema, dict) else None
    if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
        known = schema_keys(err.schema, root)
        lines = []
        for key in [k for k in err.instance if k not in known]:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(
                f"  - {'.'.join([*path, str(key)])}: unknown key{f' for {title}' if title else ''}{hint} "
                f"(known: {', '.join(sorted(known))})"
            )
        if lines:
            return lines
    return [f"  - {field}: {err.message}{f' ({title})' if title else ''}"]


def validate_schema(
    config: dict,
    schema_name: str,
    source: str,
    definition: str | None = None,
    required: tuple[str, ...] = (),
    prefix: str = "",
) -> None:
    """Validate with jsonschema and report the offending field path and the file. `definition`
    validates against one of the schema's `$defs` (with `required` keys added); `prefix` is the
    field path of `config` inside its file (e.g. `datasets.mmlu` of a registry entry)."""
    validator = _validator(schema_name, definition, required)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [line for err in errors[:10] for line in _schema_error_lines(err, load_schema(schema_name), prefix)]
        raise ConfigError(f"{source}: config does not match {schema_name}:\n" + "\n".join(lines))


def _matches(instance: Any, schema: dict) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(instance)


def _fill(instance: Any, schema: dict, root: dict) -> None:
    """Set the `default:` of every absent property, in place, through `$ref`, `allOf`, the
    `then` of a matching `if`, and into nested objects; a node marked `x-layer: true` (a partial
    value merged over another, e.g. finetune.overrides) is left as written: its defaults belong
    to the merged result."""
    if not isinstance(schema, dict) or not isinstance(instance, dict) or schema.get("x-layer"):
        return
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        _fill(instance, root["$defs"][ref.split("/")[-1]], root)
    for sub in schema.get("allOf", []):
        _fill(instance, sub, root)
    if "if" in schema and "then" in schema and _matches(instance, {"$defs": root.get("$defs", {}), **schema["if"]}):
        _fill(instance, schema["then"], root)
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and isinstance(sub, dict) and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill(value, extra, root)


def with_defaults(value: dict, schema_name: str = "config.schema.yaml", definition: str | None = None) -> dict:
    """A copy of a (valid) config value with its schema's defaults filled in: the whole file, or
    a value of one of its `$defs` (a step fills its own config slice: a dataset `source`, a
    `recipe`, which params carry as written so that filling a default never reruns a job)."""
    root = load_schema(schema_name)
    out = copy.deepcopy(value)
    _fill(out, root["$defs"][definition] if definition else root, root)
    return out
