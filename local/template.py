"""Reading template.yaml for the local stack: CloudFormation tags, parameters, intrinsics, Globals.

Only what the local stack needs is resolved: Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Equals,
Fn::Not, Fn::And, Fn::Or, Fn::Join, Fn::Select, and a condition naming another condition
(``!Condition Name``, written ``{"Condition": "Name"}`` in JSON). Anything else is an error naming
the function, so a template change the local stack cannot follow fails loudly instead of drifting.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}!]+)\}")


class TemplateError(ValueError):
    pass


class _Loader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Callable[[yaml.Loader, yaml.Node], dict[str, Any]]:
    # CloudFormation's long forms: {"Ref": ..}, {"Condition": ..} (no Fn:: prefix), {"Fn::<name>": ..}.
    key = name if name in ("Ref", "Condition") else f"Fn::{name}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _name in ("Ref", "GetAtt", "Sub", "If", "Equals", "Not", "And", "Or", "Join", "Select",
              "Split", "FindInMap", "ImportValue", "Base64", "GetAZs", "Condition", "Cidr"):
    _Loader.add_constructor(f"!{_name}", _tag(_name))


def load_template(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_Loader)  # nosec B506 - _Loader is a SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path}: not a CloudFormation template")
    return data


def _merge(base: Any, over: Any) -> Any:
    """SAM Globals merge: maps merge key by key, lists concatenate, scalars are replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return over


@dataclass
class Template:
    """A template with parameter values and the physical ids the local stack gave its resources."""

    body: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attr) -> value
    pseudo: dict[str, str] = field(default_factory=dict)
    _evaluating: list[str] = field(default_factory=list, repr=False, compare=False)  # conditions being resolved

    @classmethod
    def load(cls, path: Path, overrides: Mapping[str, str] | None = None, region: str = "us-east-1") -> Template:
        body = load_template(path)
        values: dict[str, str] = {}
        for name, spec in (body.get("Parameters") or {}).items():
            if overrides and name in overrides:
                values[name] = str(overrides[name])
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                raise TemplateError(f"template parameter {name} has no default and no value was given")
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, values[name]):
                raise TemplateError(f"template parameter {name}={values[name]!r} does not match {pattern}")
        unknown = set(overrides or {}) - set(values)
        if unknown:
            raise TemplateError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        pseudo = {
            "AWS::Region": region, "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "kefu-local",
        }
        return cls(body=body, parameters=values, pseudo=pseudo)

    # -- structure ----------------------------------------------------------------------------

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.body["Resources"].items() if v.get("Type") == type_name}

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        """A function's properties with the template's Globals.Function merged under them."""
        resource = self.body["Resources"][logical_id]
        glob = copy.deepcopy((self.body.get("Globals") or {}).get("Function") or {})
        return _merge(glob, copy.deepcopy(resource.get("Properties") or {}))

    def condition(self, name: str) -> bool:
        """A named condition's value; a condition may name others (``!Condition Other``)."""
        conditions = self.body.get("Conditions") or {}
        if not isinstance(name, str) or name not in conditions:
            raise TemplateError(f"unknown condition {name!r}")
        if name in self._evaluating:
            chain = " -> ".join([*self._evaluating[self._evaluating.index(name):], name])
            raise TemplateError(f"circular condition: {chain}")
        self._evaluating.append(name)
        try:
            return bool(self.resolve(conditions[name]))
        finally:
            self._evaluating.pop()

    # -- intrinsics ---------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            # {"Condition": {...}} is an IAM statement's block, not a reference to a condition.
            if key == "Ref" or key.startswith("Fn::") or (key == "Condition" and isinstance(arg, str)):
                return self._intrinsic(key, arg)
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        if name in self.body["Resources"]:
            return f"local-{name}"
        raise TemplateError(f"Ref to unknown name {name!r}")

    def _getatt(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        if logical_id not in self.body["Resources"]:
            raise TemplateError(f"GetAtt of unknown resource {logical_id!r}")
        return f"local-{logical_id}-{attribute}"

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self._ref(arg)
        if key == "Fn::GetAtt":
            return self._getatt(*arg)
        if key == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

            def replace(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in extra:
                    return str(extra[name])
                if "." in name and name.split(".", 1)[0] in self.body["Resources"]:
                    return self._getatt(*name.split(".", 1))
                return str(self._ref(name))

            return _SUB.sub(replace, text)
        if key == "Fn::If":
            name, yes, no = arg
            return self.resolve(yes if self.condition(name) else no)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(arg))
        if key == "Fn::Or":
            return any(self.resolve(arg))
        if key in ("Condition", "Fn::Condition"):  # the second: what older loaders made of !Condition
            return self.condition(arg)
        if key == "Fn::Join":
            sep, items = arg
            return sep.join(str(i) for i in self.resolve(items))
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        raise TemplateError(f"the local stack does not support {key}")
