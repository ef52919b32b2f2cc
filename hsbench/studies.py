"""Study files: TOML -> :class:`Study` (a list of fully resolved :class:`~hsbench.config.Variant`).

A study is one TOML file (parsed with :mod:`tomllib`; nothing in it is ever
evaluated as Python)::

    seeds = [0]                       # optional, top level or in [study]; one run per seed

    [study]
    name = "grid_size"                # required; the database key of the study
    description = "Table S2: grid size and positional encoding"
    table = "S2"                      # paper table reproduced: "2", "3", "4", "S2", "S3" (optional)

    [base.model]                      # every variant starts from [base]
    template = "voc-l"                # ModelConfig fields (hsbench.models)
    [base.data]                       # DataConfig fields (hsbench.data)
    dataset = "voc"
    [base.train]                      # TrainConfig fields; left out = Table 1 preset of the dataset
    [base.eval]                       # EvalConfig fields
    [base.speed]                      # SpeedConfig fields (FPS protocol)
    resolution = [512, 512]           # (W, H) of complexity and FPS; "512x512" also accepted
    [base.measure]                    # complexity counters
    counters = ["thop", "fvcore", "flop_counter"]

    [axes]                            # optional: the cartesian product of these lists
    "model.grid_size" = [1, 4, 8, 16]
    "model.positional_encoding" = [false, true]

    [[variants]]                      # optional: explicit variants overriding [base]
    name = "grid16_pe"
    model.grid_size = 16

    [launch]                          # optional: SLURM resources of --executor submitit jobs
    cpus_per_task = 4                 # (hsbench.resources.LaunchConfig; hsbench run options win)

Semantics
    The variants are ``rows x product(axes)``: each ``[[variants]]`` table is
    a row (``[base]`` alone is the one row when there are none) and every
    combination of the axis values is applied to every row. A row may not set
    a key that is also an axis. Keys are ``section.field`` (``model.grid_size``),
    written as a dotted key, a quoted dotted key or a sub-table; a bare field
    name (``grid_size``) is accepted where only one section has it. Each
    variant is named by its row's ``name`` (or ``base``) followed by its axis
    values (``grid_size=4,positional_encoding=false``); names must be unique.

Resolution and defaults
    Fields left out take the defaults of their section: the template's
    (supplement Table S1) for the model, the dataset's (paper Sec. 4.1) for the
    data, Table 1's recipe for training (iterations = t / batch), the paper's
    FPS protocol for speed. ``model.num_classes`` defaults to the dataset's
    class count. ``speed.resolution`` defaults to ``data.eval_resolution``
    (then to the synthetic image size); a study on a real dataset must state
    one of them. The data root comes from ``--data-root``, else
    ``data.root``, else ``$HSBENCH_DATA``, else ``./data``.

Validation (before anything runs or is written)
    TOML syntax; unknown keys (with a did-you-mean); wrong types; impossible
    values (each section's own checks and :func:`hsbench.models.resolve`); a
    grid larger than the stride-32 feature map or an input under 64x64;
    duplicate variants; missing dataset folders. Every error is a
    :class:`StudyError` whose one-line message names the file, the line
    (where one can be found) and the key path, e.g.
    ``studies/x.toml:12: base.model.grid_sise: unknown model option 'grid_sise'; did you mean 'grid_size'?``
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Union

from hsbench.config import SECTIONS, MeasureConfig, Variant
from hsbench.data.config import DataConfig
from hsbench.engine.config import EvalConfig, TrainConfig, _table1_key
from hsbench.errors import ConfigError, DataError
from hsbench.values import INT64_MAX, check_float, check_int
from hsbench.measure.config import SpeedConfig
from hsbench.models.config import ModelConfig
from hsbench.resources import LaunchConfig

#: Paper tables a study may name (paper Tables 2-4, supplement Tables S2, S3).
PAPER_TABLES = ("2", "3", "4", "S2", "S3")
#: Keys allowed at the top level of a study file.
TOP_KEYS = ("study", "base", "axes", "variants", "seeds", "launch")
#: Keys allowed in ``[study]``.
STUDY_KEYS = ("name", "description", "table", "seeds", "baseline")
#: Smallest input side the model accepts, pixels (HyperSeg.MIN_SIZE).
MIN_SIDE = 64
#: Most variants (rows x axis product) and most runs (variants x seeds) one study may make;
#: counted before any variant is built (README, "Study files").
MAX_VARIANTS = 10_000
#: Deepest nesting of lists in one setting (a resolution list is depth 1, a list of them depth 2).
MAX_NESTING = 8
#: Largest seed: torch.manual_seed takes a 64-bit unsigned seed; hsbench stores it in a signed column.
SEED_MAX = INT64_MAX
#: Fields that accept a ``"WxH"`` string as well as ``[W, H]``.
WH_FIELDS = {("data", "eval_resolution"), ("speed", "resolution")}

Path_ = tuple[Union[str, int], ...]


class StudyError(ConfigError):
    """A study file is malformed or impossible; the message is one line naming file, line and key.

    Attributes:
        file: the study file.
        line: 1-based line of the offending key (None when it cannot be found).
        key: the key path, e.g. ``"variants[1].model.grid_size"`` (None for the file as a whole).
        reason: the message without the location.
    """

    def __init__(self, file: str, reason: str, key: str | None = None, line: int | None = None):
        self.file, self.reason, self.key, self.line = file, reason, key, line
        where = f"{file}:{line}" if line else file
        text = f"{where}: {key}: {reason}" if key else f"{where}: {reason}"
        super().__init__(" ".join(text.split()))  # always one line


# --------------------------------------------------------------------------- key lines

_BARE = r"[A-Za-z0-9_\-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_ARRAY_HEADER = re.compile(rf"^\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\[\s*({_DOTTED})\s*\]")
_KEY_LINE = re.compile(rf"^({_DOTTED})\s*=")
_PART = re.compile(_KEY)


def _split_key(dotted: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ("a", "b.c", "d")."""
    out = []
    for m in _PART.finditer(dotted):
        part = m.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        out.append(part)
    return tuple(out)


class KeyLines:
    """Line numbers of the keys of a TOML text, found by a simple line scan.

    Paths are tuples such as ``("base", "model", "grid_size")`` or
    ``("variants", 1, "model", "grid_size")`` (array-of-tables entries get
    their 0-based index). Multi-line strings are not parsed; a key written
    inside one could be found by mistake, which only affects a message's line.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[Path_, int] = {}
        current: Path_ = ()
        counts: dict[Path_, int] = {}
        for lineno, raw in enumerate(text.splitlines(), start=1):
            s = raw.strip()
            if not s or s.startswith("#"):
                continue
            m = _ARRAY_HEADER.match(s)
            if m:
                p = self._indexed(_split_key(m.group(1)), counts)
                idx = counts.get(p, -1) + 1
                counts[p] = idx
                current = p + (idx,)
                self._add(current, lineno)
                continue
            m = _TABLE_HEADER.match(s)
            if m:
                current = self._indexed(_split_key(m.group(1)), counts)
                self._add(current, lineno)
                continue
            m = _KEY_LINE.match(s)
            if m:
                self._add(current + _split_key(m.group(1)), lineno)

    @staticmethod
    def _indexed(path: tuple[str, ...], counts: dict[Path_, int]) -> Path_:
        """Insert the current index after every array-of-tables prefix (``[variants.model]``)."""
        out: list[str | int] = []
        for part in path:
            out.append(part)
            key = tuple(out)
            if key in counts and len(out) < len(path):
                out.append(counts[key])
        return tuple(out)

    def _add(self, path: Path_, lineno: int) -> None:
        for n in range(1, len(path) + 1):
            self.lines.setdefault(path[:n], lineno)

    def find(self, path: Path_) -> int | None:
        """Line of ``path`` or of its longest prefix that was seen; None if none."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def format_path(path: Path_) -> str:
    """``("variants", 1, "model", "grid_size")`` -> ``variants[1].model.grid_size``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if re.fullmatch(_BARE, part) else f'"{part}"'
            out += f".{shown}" if out else shown
    return out


# --------------------------------------------------------------------------- types


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


FIELDS: dict[str, dict[str, Any]] = {name: _hints(cls) for name, cls in SECTIONS.items()}


def _matches(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a dataclass field's type hint."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, dict)
    return True


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(hint: Any) -> str:
    """Plain-words description of a type hint."""
    if hint is Any:
        return "any value"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin is Literal:
        return " or ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in args)
    if hint in _NAMES:
        return _NAMES[hint]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} values"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(hint, "values")


def _toml_value(value: Any) -> str:
    """A value as TOML writes it (for messages and variant names)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed: {', '.join(choices)}"


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class Study:
    """A parsed, validated study.

    Attributes:
        name: the study's name (``[study] name``), its key in the database.
        description: free text.
        table: the paper table it reproduces (``"2"``, ``"3"``, ``"4"``, ``"S2"``, ``"S3"``) or None.
        path: the file it was read from.
        text: the file's text (stored with the study).
        variants: the fully resolved variants, in file order (rows, then axis product).
        seeds: training seeds; every variant runs once per seed.
        baseline: the variant (by name) that reports pair every other variant with
            (``[study] baseline``); None = the report picks the variant closest to
            the paper's configuration.
        launch: the ``[launch]`` table: SLURM resources of the study's jobs
            (:class:`hsbench.resources.LaunchConfig`; all defaults without one).
    """

    name: str
    description: str | None
    table: str | None
    path: str
    text: str
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    baseline: str | None = None
    launch: LaunchConfig = LaunchConfig()

    def jobs(self) -> list[tuple[Variant, int]]:
        """``(variant, seed)`` pairs in run order: variant by variant, seed by seed."""
        return [(v, s) for v in self.variants for s in self.seeds]


@dataclass
class _Setting:
    section: str
    field: str
    value: Any
    source: Path_


class _Parser:
    def __init__(self, file: str, text: str, data_root: str | None, check_data: bool = True) -> None:
        self.file = file
        self.check_data = check_data
        self.text = text
        self.data_root = data_root
        self.lines = KeyLines(text)

    # ---- errors --------------------------------------------------------------------

    def error(self, reason: str, path: Path_ | None = None) -> StudyError:
        if not path:
            return StudyError(self.file, reason)
        return StudyError(self.file, reason, format_path(path), self.lines.find(path))

    # ---- keys ----------------------------------------------------------------------

    def _field_of(self, parts: tuple[str, ...], path: Path_) -> tuple[str, str]:
        """``("model", "grid_size")`` or ``("grid_size",)`` -> (section, field)."""
        if len(parts) == 2:
            section, name = parts
            if section not in SECTIONS:
                raise self.error(f"unknown section {section!r}" + _did_you_mean(section, list(SECTIONS)), path)
            if name not in FIELDS[section]:
                raise self.error(
                    f"unknown {section} option {name!r}" + _did_you_mean(name, sorted(FIELDS[section])), path
                )
            return section, name
        if len(parts) == 1:
            (name,) = parts
            owners = [s for s in SECTIONS if name in FIELDS[s]]
            if len(owners) == 1:
                return owners[0], name
            if len(owners) > 1:
                raise self.error(
                    f"{name!r} is an option of several sections; write one of "
                    + ", ".join(f"{s}.{name}" for s in owners),
                    path,
                )
            every = list(SECTIONS) + [f"{s}.{f}" for s in SECTIONS for f in FIELDS[s]]
            every += sorted({f for s in SECTIONS for f in FIELDS[s]})
            close = difflib.get_close_matches(name, every, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; write section.option with a section from {', '.join(SECTIONS)}"
            )
            raise self.error(f"unknown key {name!r}" + hint, path)
        raise self.error(
            f"key {'.'.join(parts)!r} is too deep; write section.option, e.g. model.grid_size", path
        )

    def settings(self, table: Mapping[str, Any], path: Path_, *, skip: tuple[str, ...] = ()) -> Iterator[_Setting]:
        """Flatten a table of ``section.field = value`` keys (any TOML spelling)."""
        yield from self._walk(table, path, (), skip)

    def _walk(self, table: Mapping[str, Any], path: Path_, parts: tuple[str, ...], skip: tuple[str, ...]) -> Iterator[_Setting]:
        for key, value in table.items():
            if not parts and key in skip:
                continue
            src = path + (key,)
            here = parts + tuple(key.split("."))
            if len(here) == 1 and here[0] in SECTIONS:
                if not isinstance(value, dict):
                    raise self.error(
                        f"{here[0]} must be a table of {here[0]} options, got {_type_name(value)}", src
                    )
                yield from self._walk(value, src, here, skip)
                continue
            section, name = self._field_of(here, src)
            yield _Setting(section, name, value, src)

    # ---- values --------------------------------------------------------------------

    def check_value(self, s: _Setting, value: Any, path: Path_) -> Any:
        """Type-check one value (and convert ``"WxH"`` strings); return what the config gets."""
        hint = FIELDS[s.section][s.field]
        if (s.section, s.field) in WH_FIELDS and isinstance(value, str):
            from hsbench.values import parse_resolution

            try:
                value = list(parse_resolution(value))
            except ConfigError as exc:
                raise self.error(str(exc), path) from None
        self.check_numbers(value, path, f"{s.section}.{s.field}")
        if not _matches(value, hint):
            raise self.error(
                f"{s.section}.{s.field} must be {_describe(hint)}, got {_type_name(value)} "
                f"{_toml_value(value)}",
                path,
            )
        return value

    def check_numbers(self, value: Any, path: Path_, what: str, depth: int = 0) -> None:
        """Every int of ``value`` fits a 64-bit column, every float is finite, lists nest at most
        :data:`MAX_NESTING` deep: the one range check of a study's numbers, before anything is written."""
        if depth > MAX_NESTING:
            raise self.error(f"{what} nests lists more than {MAX_NESTING} deep; a setting is a number, "
                             "a string or a short list", path)
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            try:
                if isinstance(value, int):
                    check_int(value, what)
                else:
                    check_float(value, what)
            except ConfigError as exc:
                fix = (" (nan and inf are not allowed; write a finite number)" if isinstance(value, float)
                       else "")
                raise self.error(f"{exc}{fix}", path) from None
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.check_numbers(v, path, what, depth + 1)
        elif isinstance(value, dict):
            for v in value.values():
                self.check_numbers(v, path, what, depth + 1)

    # ---- top level -----------------------------------------------------------------

    def parse(self) -> Study:
        try:
            doc = tomllib.loads(self.text.removeprefix("\ufeff"))  # a UTF-8 BOM is not TOML, but harmless
        except RecursionError:
            raise StudyError(
                self.file, f"lists or tables are nested too deep to read; a setting nests at most {MAX_NESTING} "
                "levels (e.g. axes = [[480, 360], [960, 720]])"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
            if m:
                reason = msg[: m.start()].strip()
                raise StudyError(
                    self.file, f"invalid TOML: {reason} (column {m.group(2)}); fix the syntax", line=int(m.group(1))
                ) from None
            raise StudyError(self.file, f"invalid TOML: {msg}; fix the syntax") from None

        for key in doc:
            if key not in TOP_KEYS:
                raise self.error(f"unknown top-level key {key!r}" + _did_you_mean(key, TOP_KEYS), (key,))

        name, description, table, seeds = self._study(doc)
        launch = self._launch(doc)
        base = self._base(doc)
        axes = self._axes(doc)
        rows = self._rows(doc)
        axis_keys = {(a.section, a.field) for a in axes}
        for i, row in enumerate(rows):
            for s in row[1]:
                if (s.section, s.field) in axis_keys:
                    raise self.error(
                        f"{s.section}.{s.field} is also an axis; set it either in [axes] or in the variant",
                        s.source,
                    )

        self._check_count(rows, axes, seeds)
        variants: list[Variant] = []
        for row_name, row_settings in rows:
            for combo in itertools.product(*[[(a, i) for i in range(len(a.value))] for a in axes]):
                merged: dict[tuple[str, str], tuple[Any, Path_]] = {}
                for s in base:
                    merged[(s.section, s.field)] = (s.value, s.source)
                for s in row_settings:
                    merged[(s.section, s.field)] = (s.value, s.source)
                label = [] if row_name is None else [row_name]
                for a, i in combo:
                    merged[(a.section, a.field)] = (a.value[i], a.source + (i,))
                    label.append(f"{a.field}={_toml_value(a.value[i]).strip(chr(34)).replace(', ', ',')}")
                vname = ",".join(label) if label else "base"
                if row_name is None and not label:
                    vname = name
                variants.append(self._variant(vname, merged, seeds))

        self._check_unique(variants)
        baseline = self._baseline(doc, variants)
        if self.check_data:
            self._check_data(variants)
        return Study(
            name=name,
            description=description,
            table=table,
            path=self.file,
            text=self.text,
            variants=tuple(variants),
            seeds=seeds,
            baseline=baseline,
            launch=launch,
        )

    def _baseline(self, doc: dict[str, Any], variants: list[Variant]) -> str | None:
        """``[study] baseline``: the name of one of the study's variants, or None."""
        raw = doc["study"].get("baseline")
        if raw is None:
            return None
        names = [v.name for v in variants]
        if not isinstance(raw, str) or raw not in names:
            raise self.error(
                f"baseline {_toml_value(raw)} is not a variant of this study"
                + _did_you_mean(str(raw), names) + f"; variants: {', '.join(names)}",
                ("study", "baseline"),
            )
        return raw

    def _study(self, doc: dict[str, Any]) -> tuple[str, str | None, str | None, tuple[int, ...]]:
        study = doc.get("study")
        if study is None:
            raise self.error('the [study] table is missing; start the file with [study] and name = "..."')
        if not isinstance(study, dict):
            raise self.error(f"study must be a table, got {_type_name(study)}", ("study",))
        for key in study:
            if key not in STUDY_KEYS:
                raise self.error(
                    f"unknown [study] key {key!r}" + _did_you_mean(key, STUDY_KEYS), ("study", key)
                )
        name = study.get("name")
        if name is None:
            raise self.error('[study] has no name; add name = "my_study"', ("study",))
        if not isinstance(name, str) or not name.strip():
            raise self.error(f"name must be a non-empty string, got {_toml_value(name)}", ("study", "name"))
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise self.error(
                f"name {name!r} may use only letters, digits, '_', '-' and '.'", ("study", "name")
            )
        desc = study.get("description")
        if desc is not None and not isinstance(desc, str):
            raise self.error(f"description must be a string, got {_type_name(desc)}", ("study", "description"))
        table = study.get("table")
        if table is not None:
            if isinstance(table, bool) or not isinstance(table, (str, int)):
                raise self.error(f"table must be a string such as \"S2\", got {_type_name(table)}", ("study", "table"))
            from hsbench.reporting.paper import normalize_table_id

            table = normalize_table_id(table)
            if table not in PAPER_TABLES:
                raise self.error(
                    f"unknown paper table {study['table']!r}; choose one of {', '.join(PAPER_TABLES)}",
                    ("study", "table"),
                )
        if "seeds" in doc and "seeds" in study:
            raise self.error("seeds is given twice (top level and in [study]); keep one", ("study", "seeds"))
        seeds_path: Path_ = ("study", "seeds") if "seeds" in study else ("seeds",)
        raw = study.get("seeds", doc.get("seeds", [0]))
        if not isinstance(raw, list) or not raw:
            raise self.error(f"seeds must be a non-empty list of integers, got {_toml_value(raw)}", seeds_path)
        for s in raw:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX:
                shown = _toml_value(s) if len(str(s)) <= 30 else f"an integer of {len(str(s))} digits"
                raise self.error(
                    f"seeds must be non-negative integers of at most {SEED_MAX} (torch's seed range), "
                    f"got {shown}", seeds_path
                )
        if len(set(raw)) != len(raw):
            raise self.error(f"seeds has duplicates: {_toml_value(raw)}", seeds_path)
        return name, desc, table, tuple(raw)

    def _launch(self, doc: dict[str, Any]) -> LaunchConfig:
        table = doc.get("launch", {})
        if not isinstance(table, dict):
            raise self.error(f"launch must be a table of SLURM resources, got {_type_name(table)}", ("launch",))
        allowed = [f.name for f in dataclasses.fields(LaunchConfig)]
        for key, value in table.items():
            if key not in allowed:
                raise self.error(f"unknown [launch] key {key!r}" + _did_you_mean(key, allowed), ("launch", key))
            try:
                LaunchConfig(**{key: value})
            except ConfigError as exc:
                raise self.error(f"{exc}", ("launch", key)) from None
        try:
            return LaunchConfig.from_dict(table)
        except ConfigError as exc:
            raise self.error(str(exc), ("launch",)) from None

    def _base(self, doc: dict[str, Any]) -> list[_Setting]:
        base = doc.get("base", {})
        if not isinstance(base, dict):
            raise self.error(f"base must be a table, got {_type_name(base)}", ("base",))
        out = list(self.settings(base, ("base",)))
        self._no_twice(out)
        for s in out:
            s.value = self.check_value(s, s.value, s.source)
        return out

    def _axes(self, doc: dict[str, Any]) -> list[_Setting]:
        axes = doc.get("axes", {})
        if not isinstance(axes, dict):
            raise self.error(f"axes must be a table of lists, got {_type_name(axes)}", ("axes",))
        out = list(self.settings(axes, ("axes",)))
        self._no_twice(out)
        for a in out:
            if not isinstance(a.value, list):
                raise self.error(
                    f"an axis must be a list of values, e.g. [1, 4, 8], got {_type_name(a.value)} "
                    f"{_toml_value(a.value)}",
                    a.source,
                )
            if not a.value:
                raise self.error("an axis must list at least one value", a.source)
            a.value = [self.check_value(a, v, a.source + (i,)) for i, v in enumerate(a.value)]
        return out

    def _rows(self, doc: dict[str, Any]) -> list[tuple[str | None, list[_Setting]]]:
        rows = doc.get("variants")
        if rows is None:
            return [(None, [])]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise self.error("variants must be an array of tables: write each one as [[variants]]", ("variants",))
        if not rows:
            raise self.error("variants is empty; add [[variants]] tables or remove the key", ("variants",))
        out: list[tuple[str | None, list[_Setting]]] = []
        for i, row in enumerate(rows):
            vname = row.get("name", f"variant{i + 1}")
            if not isinstance(vname, str) or not vname.strip():
                raise self.error(f"name must be a non-empty string, got {_toml_value(vname)}", ("variants", i, "name"))
            settings = list(self.settings(row, ("variants", i), skip=("name",)))
            self._no_twice(settings)
            for s in settings:
                s.value = self.check_value(s, s.value, s.source)
            out.append((vname, settings))
        return out

    def _check_count(self, rows: list, axes: list[_Setting], seeds: tuple[int, ...]) -> None:
        """Refuse more than :data:`MAX_VARIANTS` variants (or runs), counted before any is built."""
        count = len(rows)
        for a in axes:
            count *= len(a.value)
        sizes = " x ".join(f"{a.section}.{a.field} ({len(a.value)})" for a in axes)
        shape = (f"{len(rows)} row(s) x {sizes}" if sizes else f"{len(rows)} row(s)")
        if count > MAX_VARIANTS:
            raise self.error(
                f"the study makes {count:,} variants ({shape}), more than the limit of {MAX_VARIANTS:,}; "
                "split it into several studies or use fewer axis values",
                ("axes",) if axes else ("variants",),
            )
        if count * len(seeds) > MAX_VARIANTS:
            raise self.error(
                f"the study makes {count:,} variants x {len(seeds)} seeds = {count * len(seeds):,} runs, more "
                f"than the limit of {MAX_VARIANTS:,}; use fewer seeds or split the study",
                ("seeds",),
            )

    def _no_twice(self, settings: list[_Setting]) -> None:
        seen: dict[tuple[str, str], _Setting] = {}
        for s in settings:
            key = (s.section, s.field)
            if key in seen:
                raise self.error(
                    f"{s.section}.{s.field} is set twice (also at {format_path(seen[key].source)}); keep one",
                    s.source,
                )
            seen[key] = s

    # ---- one variant ---------------------------------------------------------------

    def _variant(self, vname: str, merged: dict[tuple[str, str], tuple[Any, Path_]], seeds: tuple[int, ...]) -> Variant:
        sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        sources: dict[str, Path_] = {}
        for (section, name), (value, src) in merged.items():
            sections[section][name] = value
            sources[f"{section}.{name}"] = src

        def fail(section: str, exc: Exception) -> StudyError:
            msg = str(exc)
            # point at the field the message names, else at the section
            named = [f for f in sections[section] if re.search(rf"\b{re.escape(f)}\b", msg)]
            src = sources.get(f"{section}.{named[0]}") if named else None
            if src is None:
                src = next((v for k, v in sources.items() if k.startswith(section + ".")), None)
            if src is None:
                src = ("base", section)
            return self.error(f"{msg} (variant {vname!r})", src)

        # data (its defaults depend on the dataset)
        d = dict(sections["data"])
        if self.data_root is not None:
            d["root"] = str(self.data_root)
        try:
            data = DataConfig.from_dict(d)
        except (ValueError, TypeError) as exc:
            raise fail("data", exc) from None

        # model: the dataset's class count unless the study says otherwise
        m = dict(sections["model"])
        from hsbench.data.info import CLASS_NAMES

        n_classes = len(CLASS_NAMES[data.dataset])
        if m.get("num_classes") is None:
            m["num_classes"] = n_classes
        elif m["num_classes"] != n_classes:
            raise self.error(
                f"model.num_classes = {m['num_classes']} but {data.dataset} has {n_classes} classes; "
                f"leave num_classes out (it defaults to the dataset's) or set {n_classes} (variant {vname!r})",
                sources["model.num_classes"],
            )
        try:
            from hsbench.models.hyperseg import resolve

            model = resolve(ModelConfig.from_dict(m))
        except (ValueError, TypeError, KeyError) as exc:
            raise fail("model", exc) from None

        # train: Table 1 preset of the dataset, then the study's values
        t = dict(sections["train"])
        try:
            try:
                _table1_key(data.dataset)
                has_preset = True
            except ValueError:
                has_preset = False
            train = TrainConfig.preset(data.dataset, **t) if has_preset else TrainConfig.from_dict(t)
        except (ValueError, TypeError) as exc:
            raise fail("train", exc) from None

        try:
            ev = EvalConfig.from_dict(sections["eval"])
        except (ValueError, TypeError) as exc:
            raise fail("eval", exc) from None
        if ev.split is not None:
            from hsbench.data.config import SPLITS

            if ev.split not in SPLITS[data.dataset]:
                raise fail("eval", ValueError(
                    f"split={ev.split!r} is not a {data.dataset} split; choose one of {list(SPLITS[data.dataset])}"
                ))

        sp = dict(sections["speed"])
        if sp.get("resolution") is None:
            if data.eval_resolution is not None:
                sp["resolution"] = list(data.eval_resolution)
            elif data.dataset == "synthetic":
                h, w = data.synthetic_size
                sp["resolution"] = [w, h]
            else:
                raise self.error(
                    f"variant {vname!r} states no resolution; set speed.resolution = [W, H] "
                    "(or data.eval_resolution) in [base.speed]",
                    ("base",),
                )
        try:
            speed = SpeedConfig.from_dict(sp)
        except (ValueError, TypeError) as exc:
            raise fail("speed", exc) from None

        try:
            measure = MeasureConfig.from_dict(sections["measure"])
        except (ValueError, TypeError) as exc:
            raise fail("measure", exc) from None

        self._check_sizes(vname, model, data, speed, sources)
        if train.iterations == 0 and not model.weights:
            raise self.error(
                f"train.iterations = 0 only evaluates trained weights; set model.weights (variant {vname!r})",
                sources.get("train.iterations", ("base",)),
            )
        if data.dataset == "synthetic" and train.iterations > 0 and train.batch_size > data.synthetic_length:
            raise self.error(
                f"train.batch_size = {train.batch_size} is larger than the {data.synthetic_length} images of the "
                f"synthetic training split; lower batch_size or raise data.synthetic_length (variant {vname!r})",
                sources.get("train.batch_size", sources.get("data.synthetic_length", ("base",))),
            )
        return Variant(
            name=vname, model=model, data=data, train=train, eval=ev, speed=speed, measure=measure,
            seeds=seeds, sources={k: format_path(v) for k, v in sources.items()},
        )

    def _check_sizes(self, vname: str, model: ModelConfig, data: DataConfig, speed: SpeedConfig,
                     sources: dict[str, Path_]) -> None:
        """Inputs of at least 64x64 and an int grid no larger than the stride-32 map."""
        sizes: list[tuple[str, tuple[int, int]]] = [("speed.resolution", tuple(speed.resolution))]
        if data.eval_resolution is not None:
            sizes.append(("data.eval_resolution", tuple(data.eval_resolution)))
        if data.crop_size is not None:
            sizes.append(("data.crop_size", (data.crop_size[1], data.crop_size[0])))
        if data.dataset == "synthetic":
            sizes.append(("data.synthetic_size", (data.synthetic_size[1], data.synthetic_size[0])))
        for key, (w, h) in sizes:
            src = sources.get(key, ("base",))
            if min(w, h) < MIN_SIDE:
                raise self.error(
                    f"{key} {w}x{h} is below HyperSeg's minimum input of {MIN_SIDE}x{MIN_SIDE} pixels "
                    f"(variant {vname!r})",
                    src,
                )
            grid = model.grid_size
            if model.dynamic and isinstance(grid, int) and grid > min(-(-h // 32), -(-w // 32)):
                gsrc = sources.get("model.grid_size", src)
                raise self.error(
                    f"grid_size={grid} needs a stride-32 feature map of at least {grid}x{grid}, but {key} "
                    f"{w}x{h} gives {-(-w // 32)}x{-(-h // 32)}; use a smaller grid or a larger input "
                    f"(variant {vname!r})",
                    gsrc,
                )

    # ---- whole-study checks --------------------------------------------------------

    def _check_unique(self, variants: list[Variant]) -> None:
        names: dict[str, Variant] = {}
        ids: dict[str, Variant] = {}
        for v in variants:
            if v.name in names:
                raise self.error(f"two variants are named {v.name!r}; give each [[variants]] its own name")
            names[v.name] = v
            vid = v.variant_id()
            if vid in ids:
                raise self.error(
                    f"variants {ids[vid].name!r} and {v.name!r} resolve to the same config (id {vid}); "
                    "remove one or make them differ"
                )
            ids[vid] = v

    def _check_data(self, variants: list[Variant]) -> None:
        from hsbench.data import build_dataset

        seen: set[tuple[str, str, str, str]] = set()
        sizes: dict[tuple[str, str, str, str], int] = {}
        for v in variants:
            d = v.data
            if d.dataset == "synthetic":
                continue
            splits = {d.train_split, v.eval.split or d.eval_split}
            for split in sorted(splits):
                key = (d.dataset, str(d.data_root), d.camvid_layout, split)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    sizes[key] = len(build_dataset(d, split, train=False))
                except DataError as exc:
                    src = v.sources.get("data.dataset")
                    path = _parse_source(src) if src else ("base", "data")
                    raise self.error(f"{exc} (pass --data-root DIR or set data.root)", path) from None
            n_train = sizes[(d.dataset, str(d.data_root), d.camvid_layout, d.train_split)]
            if v.train.iterations > 0 and v.train.batch_size > n_train:
                src = v.sources.get("train.batch_size")
                raise self.error(
                    f"train.batch_size = {v.train.batch_size} is larger than the {n_train} images of the "
                    f"{d.dataset} {d.train_split!r} split; lower batch_size (variant {v.name!r})",
                    _parse_source(src) if src else ("base", "train"),
                )


def _parse_source(text: str) -> Path_:
    """Inverse of :func:`format_path` for the simple paths it writes."""
    out: list[str | int] = []
    for m in re.finditer(r'\[(\d+)\]|"([^"]*)"|([^.\[\]"]+)', text):
        if m.group(1) is not None:
            out.append(int(m.group(1)))
        else:
            out.append(m.group(2) if m.group(2) is not None else m.group(3))
    return tuple(out)


def parse_study(text: str, *, file: str = "<study>", data_root: str | None = None,
                check_data: bool = True) -> Study:
    """Parse and validate study text (see the module docstring).

    Args:
        text: the TOML text.
        file: the name errors show.
        data_root: overrides every variant's ``data.root`` (the ``--data-root`` option).
        check_data: list each dataset's splits (a missing folder is an error);
            False checks only the file itself.

    Raises:
        StudyError: the first problem found, as one line naming file, line and key.
    """
    return _Parser(file, text, data_root, check_data).parse()


def load_study(path: str | Path, *, data_root: str | None = None, check_data: bool = True) -> Study:
    """Read, parse and validate the study file at ``path`` (see :func:`parse_study`).

    Raises:
        StudyError: the file cannot be read, or is malformed (one line naming file, line and key).
    """
    p = Path(path)
    shown = str(path)
    if p.is_dir():
        names = sorted(x.name for x in p.glob("*.toml"))
        listing = f"; it holds {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}" if names else ""
        raise StudyError(shown, f"is a folder, not a study file; give one .toml file{listing}")
    if not p.is_file():
        hint = ""
        if p.parent.is_dir():
            names = sorted(x.name for x in p.parent.glob("*.toml"))
            close = difflib.get_close_matches(p.name, names, n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean {str(p.parent / close[0])!r}?"
        raise StudyError(shown, f"no such study file{hint or '; the studies/ folder lists the shipped ones'}")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a BOM some editors write is dropped
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(shown, f"cannot read the study file: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_study(text, file=shown, data_root=data_root, check_data=check_data)


def check_name_reuse(study: Study, stored_text: str | None, stored_path: str | None, *, force: bool) -> None:
    """Refuse a study file that reuses the name of a stored study read from another file.

    ``hsbench run`` stores a study's text under its ``[study] name``. Editing
    that file and running it again updates the text (the same study, grown);
    a *different* file with the same name and other text would silently
    replace it, so it is refused unless ``force``.

    Args:
        study: the study about to be stored.
        stored_text, stored_path: the stored study's text and file (None: nothing stored).
        force: ``hsbench run --force``: replace anyway.

    Raises:
        StudyError: naming both files and the two ways out (rename, or --force).
    """
    if force or stored_text is None or stored_text == study.text:
        return
    if stored_path and Path(stored_path).resolve() == Path(study.path).resolve():
        return
    raise StudyError(
        study.path,
        f"the database already holds a study named {study.name!r}, read from "
        f"{repr(stored_path) if stored_path else 'another file'} with other text; "
        f"give this study another name, or pass --force to replace the stored text (its runs stay)",
        "study.name",
        KeyLines(study.text).find(("study", "name")),
    )


__all__ = [
    "KeyLines",
    "MAX_VARIANTS",
    "check_name_reuse",
    "PAPER_TABLES",
    "Study",
    "StudyError",
    "format_path",
    "load_study",
    "parse_study",
]
