"""Reading rule files: safe YAML with the line and column of every value, and problem reports."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from decision_server.errors import DecisionServerError

# libyaml's loader when PyYAML was built with it (10× faster); both give the same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 1024 * 1024
MAX_FILES = 200
# Only YAML's own plain types; explicit tags such as !!python/object are refused outright.
SAFE_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong (severity error) or suspicious (warning) in a rule file, with its place."""

    file: str
    line: int
    column: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """Render for JSON."""
        return dataclasses.asdict(self)


class RulesInvalid(DecisionServerError):
    """A rule revision that does not validate; nothing of it serves."""

    status = 422
    code = "rule_file_invalid"

    def __init__(self, problems: list[Problem]):
        errors = [p for p in problems if p.severity == "error"]
        first = errors[0] if errors else problems[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first}{more}", errors={"problems": [p.to_dict() for p in problems]})
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Mark:
    """Where a YAML value starts (1-based), and how a scalar was written."""

    line: int
    column: int
    style: str | None = None


class Document:
    """A parsed YAML file: plain values plus the mark of every value by its path of keys."""

    def __init__(self, name: str, text: str):
        self.name = name
        self.text = text
        self.marks: dict[tuple, Mark] = {}
        self.problems: list[Problem] = []
        self.value: Any = None
        try:
            loader = _LOADER(text)
            try:
                node = loader.get_single_node()
                self.value = None if node is None else self._convert(loader, node, ())
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            self.problem((), f"not valid YAML: {exc.problem or exc.context}", at=(line, column))

    def _convert(self, loader: yaml.SafeLoader, node: yaml.Node, path: tuple) -> Any:
        self.marks[path] = Mark(node.start_mark.line + 1, node.start_mark.column + 1, getattr(node, "style", None))
        if node.tag not in SAFE_TAGS:
            self.problem(path, f"not valid YAML for a rule file: the tag {node.tag} is not allowed")
            return None
        if isinstance(node, yaml.MappingNode):
            result: dict = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    self.problem(path, "keys must be plain names", at=(key_node.start_mark.line + 1, key_node.start_mark.column + 1))
                    continue
                if key in result:
                    self.problem(path, f"'{key}' is given twice", at=(key_node.start_mark.line + 1, key_node.start_mark.column + 1))
                    continue
                result[key] = self._convert(loader, value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(loader, item, path + (index,)) for index, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def mark(self, path: tuple) -> Mark:
        """Return the mark of the value at `path`, or of its nearest parent that has one."""
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, Mark(1, 1))

    def problem(self, path: tuple, message: str, *, severity: str = "error", at: tuple[int, int] | None = None) -> None:
        """Record a problem at the value `path` (or at an explicit line and column)."""
        line, column = at if at else (self.mark(path).line, self.mark(path).column)
        self.problems.append(Problem(self.name, line, column, message, severity))

    def text_position(self, path: tuple, offset: int) -> tuple[int, int]:
        """Map an offset inside the text scalar at `path` to a line and column of the file."""
        mark = self.mark(path)
        if mark.style in (None, "", ">") and isinstance(self._value_at(path), str):
            # Plain and folded scalars may span lines that YAML folds into spaces: walk the source.
            found = self._walk(self._index(mark.line, mark.column), self._value_at(path), offset, folded=mark.style == ">")
            if found is not None:
                return found
        if mark.style in (None, "", "'", '"'):
            value = self._value_at(path)
            quote = 0 if not mark.style else 1
            # Inside '…' a quote is written twice, so each one before `offset` shifts the column.
            doubled = value[:offset].count("'") if mark.style == "'" and isinstance(value, str) else 0
            return mark.line, mark.column + quote + offset + doubled
        if mark.style == "|":
            value = self._value_at(path)
            if isinstance(value, str):
                line_index = value[:offset].count("\n")
                column_in_line = offset - (value.rfind("\n", 0, offset) + 1)
                source_lines = self.text.splitlines()
                source_line = mark.line + line_index
                if source_line < len(source_lines):
                    raw = source_lines[source_line]
                    indent = len(raw) - len(raw.lstrip(" "))
                    return source_line + 1, indent + column_in_line + 1
        return mark.line, mark.column

    def _index(self, line: int, column: int) -> int:
        """Return the offset in the file of a 1-based line and column."""
        start = 0
        for _ in range(line - 1):
            start = self.text.index("\n", start) + 1
        return start + column - 1

    def _walk(self, start: int, value: str, offset: int, *, folded: bool) -> tuple[int, int] | None:
        """Find value[offset] in the source from `start`, matching line folds to spaces; None if lost."""
        text, i = self.text, start
        if folded:  # the content starts on the line after the '>' indicator
            i = text.find("\n", i) + 1
            if i == 0:
                return None
        while i < len(text) and text[i] in " \t":
            i += 1
        for char in value[:offset]:
            if i < len(text) and text[i] == char:
                i += 1
            elif char in " \n" and i < len(text) and text[i] in " \t\r\n":
                while i < len(text) and text[i] in " \t\r\n":  # a fold: line break and indentation
                    i += 1
            else:
                return None
        while i < len(text) and text[i] in " \t\r\n" and (offset >= len(value) or value[offset] not in " \n"):
            i += 1
        line = text.count("\n", 0, i) + 1
        return line, i - (text.rfind("\n", 0, i) + 1) + 1

    def _value_at(self, path: tuple) -> Any:
        value = self.value
        for key in path:
            value = value[key]
        return value


def read_rules_dir(directory: Path) -> dict[str, str]:
    """Read every `*.yaml` file of a rules folder (not sub-folders) as text, by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesInvalid([Problem(str(directory), 1, 1, "rules folder does not exist")])
    files: dict[str, str] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yaml")):
        if len(files) >= MAX_FILES:
            problems.append(Problem(path.name, 1, 1, f"more than {MAX_FILES} rule files"))
            break
        data = path.read_bytes()
        if len(data) > MAX_FILE_BYTES:
            problems.append(Problem(path.name, 1, 1, f"file is larger than {MAX_FILE_BYTES} bytes"))
            continue
        try:
            files[path.name] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(path.name, 1, 1, f"not UTF-8 text: {exc.reason} at byte {exc.start}"))
    if problems:
        raise RulesInvalid(problems)
    return files


def revision_id(files: Mapping[str, str]) -> str:
    """Return the content hash of a set of rule files: the revision that serves them."""
    digest = hashlib.sha256()
    for name in sorted(files):
        encoded = files[name].encode("utf-8")
        digest.update(f"{name}\0{len(encoded)}\0".encode())
        digest.update(encoded)
    return digest.hexdigest()
