"""YAML configuration files with line numbers, so a validation error can name the key and the line
at fault (the approach of kefu.routing.rules, shared with `kefu accounts`' config/accounts.yaml)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

KeyPath = tuple[Any, ...]  # keys and list indexes from the root


class YamlFileError(ValueError):
    """The file is invalid; the message names the file, the line and the key at fault."""


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise YamlFileError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _lines(node: yaml.Node, path: KeyPath, out: dict[KeyPath, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)  # a key's own line (not its value's)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            out[(*path, key_node.value)] = key_node.start_mark.line + 1
            _lines(value_node, (*path, key_node.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


def where(lines: dict[KeyPath, int], path: KeyPath) -> str:
    """``line N`` of the path, or of its nearest parent that has a line."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return f"line {lines[path[:cut]]}"
    return "line ?"


class LinedYaml:
    """A YAML document's data and the line of every key and list item (path -> line)."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        try:
            self.data: Any = yaml.load(text, Loader=_LineLoader)  # nosec B506 - _LineLoader is a SafeLoader subclass
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise YamlFileError(f"{source}: not valid YAML: {exc}") from None
        except YamlFileError as exc:  # a duplicate key: name the file as every error does
            raise YamlFileError(f"{source} {exc}") from None
        self.lines: dict[KeyPath, int] = {}
        if node is not None:
            _lines(node, (), self.lines)

    def where(self, path: KeyPath) -> str:
        return where(self.lines, path)

    def error(self, path: KeyPath, message: str) -> YamlFileError:
        name = ".".join(map(str, path))
        return YamlFileError(f"{self.source} {self.where(path)}: {name + ': ' if name else ''}{message}")

    def invalid(self, exc: ValidationError, path: KeyPath = ()) -> YamlFileError:
        """The first error of a pydantic validation of the value at ``path``."""
        err = exc.errors()[0]
        full = (*path, *err["loc"])
        return self.error(full, str(err["msg"]).removeprefix("Value error, "))
