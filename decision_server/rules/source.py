"""Reading rule files: safe YAML with the line and column of every value, and problem reports."""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from decision_server.errors import DecisionServerError

# libyaml's loader when PyYAML was built with it (10× faster); both give the same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Only YAML's own plain types; explicit tags such as !!python/object are refused outright.
SAFE_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")}


@dataclasses.dataclass(frozen=True)
class Limits:
    """How large a rule file may be; past a limit the file is refused before it is built any further.

    Every limit is far above what a real rule set needs (the shipped files are a few KiB, five
    levels deep, with a dozen rules), and low enough that refusing a hostile file costs a
    fraction of a second and a few MiB. The server's settings (RULES_MAX_*) fill it in.
    """

    file_bytes: int = 1024 * 1024
    depth: int = 20  # lists and mappings inside each other
    values: int = 50_000  # scalars, lists and mappings in one file: what parsing costs
    total_values: int = 100_000  # in all the files of a revision: what building it costs
    rules: int = 2_000  # per rule file
    cases: int = 2_000  # per cases file
    files: int = 200  # per revision


DEFAULT_LIMITS = Limits()
_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


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

    def __init__(
        self, name: str, text: str, limits: Limits = DEFAULT_LIMITS, *, build: bool = True, remaining: int | None = None
    ):
        """Read `text`; with build=False only check and count it (build() later); `remaining`: values the revision has left."""
        self.name = name
        self.text = text
        self.limits = limits
        self.marks: dict[tuple, Mark] = {}
        self.problems: list[Problem] = []
        self.value: Any = None
        self.value_count = 0  # scalars, lists and mappings, counted before any is built
        self._remaining = limits.total_values if remaining is None else remaining
        self._to_build = False  # checked and counted, values not built yet
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # JSON can carry a lone surrogate (\ud800) that no file can hold
            line, column = text.count("\n", 0, exc.start) + 1, exc.start - text.rfind("\n", 0, exc.start)
            self.problem((), f"not valid text: a lone surrogate U+{ord(text[exc.start]):04X}", at=(line, column))
            return
        if size > limits.file_bytes:
            self.problem(
                (), f"the file is {size:,} bytes; a rule file may hold at most {limits.file_bytes:,} (RULES_MAX_FILE_BYTES)"
            )
            return
        self._to_build = self._yaml(self._guard)
        if build:
            self.build()

    def build(self) -> None:
        """Build the values and their marks, unless the file was refused before (build=False defers this)."""
        if not self._to_build:
            return
        self._to_build = False

        def compose() -> bool:
            loader = _LOADER(self.text)
            try:
                node = loader.get_single_node()
                self.value = None if node is None else self._convert(loader, node, ())
            finally:
                loader.dispose()
            return True

        self._yaml(compose)

    def _yaml(self, step) -> bool:
        """Run a step that reads the YAML; a syntax error becomes a problem at its place (and False)."""
        text = self.text
        try:
            return step()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            self.problem((), f"not valid YAML: {exc.problem or exc.context}", at=(line, column))
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other control characters)
            at = min(exc.position, len(text))
            line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
            self.problem((), f"not valid YAML: character U+{exc.character:04X}: {exc.reason}", at=(line, column))
        return False

    def _guard(self) -> bool:
        """Scan the YAML events once and refuse what would make building the values costly; True if fine.

        This runs before any value is built: an alias (*name) lets 700 bytes expand to gigabytes
        (the "billion laughs"), so anchors, aliases and merge keys are refused outright, and so
        are nesting, values, rules and cases past the limits.
        """
        loader = _LOADER(self.text)
        try:
            problem = self._scan(loader)
        finally:
            loader.dispose()
        if problem:
            self.problem((), problem[0], at=problem[1])
        return problem is None

    def _scan(self, loader) -> tuple[str, tuple[int, int]] | None:
        limits, depth, values, documents = self.limits, 0, 0, 0
        items = {
            "rules": (limits.rules, "rules in one file (RULES_MAX_RULES); split the rule set"),
            "cases": (limits.cases, "cases in one file (RULES_MAX_CASES); split the file"),
        }
        top_mapping, is_key, key, counting, count = False, True, None, None, 0
        while not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            at = (event.start_mark.line + 1, event.start_mark.column + 1)
            if isinstance(event, yaml.AliasEvent):
                return f"aliases (*{event.anchor}) are not allowed in a rule file: write the value out", at
            if getattr(event, "anchor", None) is not None:
                return f"anchors (&{event.anchor}) are not allowed in a rule file: write the value out", at
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    return "a rule file holds one YAML document; remove the second '---'", at
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                counting = None if depth < 2 else counting
                continue
            if not isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                continue
            values += 1
            if values > limits.values:
                return f"more than {limits.values:,} values in one file (RULES_MAX_VALUES)", at
            if values > self._remaining:
                self.value_count = values
                return (
                    f"the files of the revision hold more than {limits.total_values:,} values in all (RULES_MAX_TOTAL_VALUES)",
                    at,
                )
            if isinstance(event, yaml.ScalarEvent) and event.value == "<<" and event.implicit[0]:
                return "merge keys (<<) are not allowed in a rule file: write the keys out", at
            if depth == 0:
                top_mapping = isinstance(event, yaml.MappingStartEvent)
            elif depth == 1 and top_mapping:  # a key or a value of the top mapping, in turn
                if not is_key and key in items and isinstance(event, yaml.SequenceStartEvent):
                    counting, count = items[key], 0
                key = event.value if is_key and isinstance(event, yaml.ScalarEvent) else None
                is_key = not is_key
            elif depth == 2 and counting:  # one rule of `rules`, one case of `cases`
                count += 1
                if count > counting[0]:
                    return f"more than {counting[0]:,} {counting[1]}", at
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.depth:
                    return f"nested more than {limits.depth} levels deep (RULES_MAX_DEPTH)", at
        self.value_count = values
        return None

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
                    self.problem(
                        path, "keys must be plain names", at=(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    )
                    continue
                if key in result:
                    self.problem(
                        path, f"'{key}' is given twice", at=(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    )
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
                    # The block's indentation, not the line's: a more-indented line keeps its extra spaces in the value.
                    indent = _block_indent(source_lines, mark.line)
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


def _block_indent(lines: list[str], header: int) -> int:
    """Return the indentation of a literal block scalar whose `|` is on the 1-based line `header`.

    YAML takes it from the block's first non-empty line (an explicit indicator such as `|2` is
    rare enough in rule files to be read the same way).
    """
    for raw in lines[header:]:
        if raw.strip():
            return len(raw) - len(raw.lstrip(" "))
    return 0


def read_rules_dir(directory: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """Read every `*.yaml` file of a rules folder (not sub-folders) as text, by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesInvalid([Problem(str(directory), 1, 1, "rules folder does not exist")])
    files: dict[str, str] = {}
    problems: list[Problem] = []
    for count, path in enumerate(sorted(directory.glob("*.yaml"))):
        if count >= limits.files:
            problems.append(Problem(path.name, 1, 1, f"more than {limits.files} rule files (RULES_MAX_FILES)"))
            break
        with path.open("rb") as handle:  # never more than the limit in memory, however large the file
            data = handle.read(limits.file_bytes + 1)
        if len(data) > limits.file_bytes:
            size = max(path.stat().st_size, len(data))
            problems.append(
                Problem(
                    path.name,
                    1,
                    1,
                    f"the file is {size:,} bytes; a rule file may hold at most {limits.file_bytes:,} (RULES_MAX_FILE_BYTES)",
                )
            )
            continue
        problem = _decode(path.name, data)
        if isinstance(problem, Problem):
            problems.append(problem)
        else:
            files[path.name] = problem
    if problems:
        raise RulesInvalid(problems)
    return files


def _decode(name: str, data: bytes) -> str | Problem:
    """Return the text of a rule file, or the problem with its encoding (where the first bad byte is)."""
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            return Problem(name, 1, 1, f"the file is {encoding} text; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        return Problem(name, line, column, f"not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8")


def revision_id(files: Mapping[str, str]) -> str:
    """Return the content hash of a set of rule files: the revision that serves them."""
    digest = hashlib.sha256()
    for name in sorted(files):
        encoded = files[name].encode("utf-8", "surrogatepass")  # a draft refused for a lone surrogate still has an id
        digest.update(f"{name}\0{len(encoded)}\0".encode())
        digest.update(encoded)
    return digest.hexdigest()
