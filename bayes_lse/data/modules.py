"""The optional modules table (issue 15): what the logs say about each lesson and
assessment beyond its id — knowledge-component tags (several per module) and groups
such as Riiid's ``part`` — so that a hierarchical model can let a question answered
three times, or a lecture seen four times, borrow strength from the modules that
share its tags.

Why a table of its own: real logs have many sparse modules (the Riiid log of issue 15:
10,149 questions, median 3 answers each; the EdNet sample: median 1), and every such
export ships this metadata beside the interactions (Riiid/EdNet ``questions.csv`` and
``lectures.csv``, DataShop's KC columns). The interaction table stays as DESIGN §2
says; this one is joined to it by ``(module_id, module_type)``.

Columns: ``module_id`` (str), ``module_type`` (``assessment``/``lesson``), ``tags``
(in a file: one string, tags separated by ``;``), and any further columns kept as
groups (e.g. ``part``). Validated like the interaction table: errors name the source,
the line (row for a DataFrame) and the column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from bayes_lse.core.errors import InteractionLogError

__all__ = ["ModuleTable", "ednet_modules", "read_modules", "riiid_modules"]

PathLike = str | os.PathLike[str]
MODULE_TYPES = ("assessment", "lesson")


@dataclass(frozen=True)
class ModuleTable:
    """Validated module metadata: one row per (module_id, module_type).

    ``table`` has ``module_id``, ``module_type``, ``tags`` (a tuple of str per row)
    and the group columns; ``source`` names where it came from.
    """

    table: pd.DataFrame
    source: str = "<modules>"

    @property
    def groups(self) -> list[str]:
        """The extra columns (e.g. ``part``)."""
        return [c for c in self.table.columns if c not in ("module_id", "module_type", "tags")]

    def tags_of(self, module_id: str, module_type: str) -> tuple[str, ...]:
        """The tags of one module (empty when the module is not in the table)."""
        hit = self.table[(self.table["module_id"] == str(module_id)) & (self.table["module_type"] == module_type)]
        return tuple(hit["tags"].iloc[0]) if len(hit) else ()

    def tag_index(self) -> pd.Index:
        """Every tag, sorted: position = the tag's integer code."""
        return pd.Index(sorted({t for tags in self.table["tags"] for t in tags}), dtype=object)

    def tag_incidence(self, module_ids: Any, module_type: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
        """Which tags each of `module_ids` carries, in compressed sparse rows.

        Parameters
        ----------
        module_ids : sequence of str
            Modules in the order a model numbers them (e.g. ``log.assessments``).
        module_type : {"assessment", "lesson"}

        Returns
        -------
        indptr : ndarray of int64, shape (n + 1,)
        indices : ndarray of int64
            Tag codes of module k are ``indices[indptr[k]:indptr[k + 1]]``; a module
            absent from the table has none (it falls back on the population).
        tags : pandas.Index
            The tag of each code (`tag_index`).
        """
        if module_type not in MODULE_TYPES:
            raise ValueError(f"module_type must be 'assessment' or 'lesson', got {module_type!r}")
        tags = self.tag_index()
        sub = self.table[self.table["module_type"] == module_type]
        by_id = dict(zip(sub["module_id"], sub["tags"], strict=True))
        codes = [tags.get_indexer(list(by_id.get(str(m), ()))) for m in module_ids]
        indptr = np.zeros(len(codes) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(c) for c in codes])
        indices = np.concatenate(codes).astype(np.int64) if codes else np.zeros(0, dtype=np.int64)
        return indptr, indices, tags

    def keys_of(self, module_type: str) -> Mapping[str, frozenset[str]]:
        """Each module's tags plus its group values (as ``"group=value"``), by module id:
        the keys whose effects a model with tag effects averages (`key_matrix`).  Made
        once per table and module type (a fit, `tag_check` and every `predict` with new
        assessments ask for them) and read-only."""
        return MappingProxyType(self._keys.get(module_type, {}))

    @cached_property
    def _keys(self) -> dict[str, dict[str, frozenset[str]]]:
        out: dict[str, dict[str, frozenset[str]]] = {}
        for module_type, sub in self.table.groupby("module_type", sort=False):
            values = [[f"{g}={str(v).strip()}" if str(v).strip() and str(v).strip().lower() != "nan" else None
                       for v in sub[g]] for g in self.groups]
            keys = {str(mid): frozenset(tags) | frozenset(v[k] for v in values if v[k] is not None)
                    for k, (mid, tags) in enumerate(zip(sub["module_id"], sub["tags"], strict=True))}
            out[str(module_type)] = keys
        return out

    def key_matrix(self, module_ids: Any, module_type: str = "assessment",
                   min_modules: int = 1) -> tuple[Any, list[str]]:
        """Each of `module_ids`'s tags and group values (`keys_of`) as a row-normalised
        sparse matrix: entry (k, t) = 1/(number of kept keys of module k) when module k has
        key t.  The columns are the keys at least `min_modules` of `module_ids` have
        (sorted); a module without kept keys has an empty row.  What a model's tag effects
        enter through: a module's tag mean is its row times the keys' effects.  A model
        keeps keys shared by two modules or more (`IndexArrays.from_log`): a key of one
        module pools nothing — MoFaCTS tags every item with its own KC besides its fact,
        and with those kept a new item's bias was centred on half a prior draw (−0.018 AUC
        on new items, `benchmarks/real_logs_new_items.py`).

        Returns
        -------
        scipy.sparse.csr_matrix, shape (len(module_ids), n_keys)
        list of str
            The key of each column.
        """
        from scipy import sparse

        keys = self.keys_of(module_type)
        rows_keys = [sorted(keys.get(str(m), ())) for m in module_ids]
        if min_modules > 1:
            from collections import Counter

            count = Counter(k for ks in rows_keys for k in ks)
            rows_keys = [[k for k in ks if count[k] >= min_modules] for ks in rows_keys]
        names = sorted({k for ks in rows_keys for k in ks})
        col = {k: i for i, k in enumerate(names)}
        r = [i for i, ks in enumerate(rows_keys) for _ in ks]
        c = [col[k] for ks in rows_keys for k in ks]
        v = [1.0 / len(ks) for ks in rows_keys for _ in ks]
        return sparse.csr_matrix((v, (r, c)), shape=(len(rows_keys), len(names))), names

    def to_frame(self) -> pd.DataFrame:
        """The table as a file holds it: ``tags`` one ";"-separated string per row."""
        return self.table.assign(tags=[";".join(t) for t in self.table["tags"]])

    def to_json(self) -> str:
        """JSON text (for a model folder: open format, no pickle)."""
        t = self.table
        rows = {c: (t[c].map(list).tolist() if c == "tags" else t[c].astype(str).tolist()) for c in t.columns}
        return json.dumps({"source": self.source, "columns": list(t.columns), "rows": rows})

    @classmethod
    def from_json(cls, text: str) -> ModuleTable:
        """The inverse of `to_json`, validated again."""
        d = json.loads(text)
        df = pd.DataFrame({c: d["rows"][c] for c in d["columns"]})
        return read_modules(df, name=d.get("source", "<json>"))

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        n = self.table["module_type"].value_counts()
        return (f"ModuleTable({self.source!r}: {n.get('assessment', 0)} assessments, {n.get('lesson', 0)} lessons, "
                f"{len(self.tag_index())} tags, groups {self.groups})")


def _fail(source: str, problem: str, row: int | None, column: str | None, row_kind: str) -> InteractionLogError:
    return InteractionLogError(source, problem, row=row, column=column, row_kind=row_kind)


def _split_tags(value: Any, sep: str | None) -> tuple[str, ...]:
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(x).strip() for x in value]
    elif value is None or (isinstance(value, float) and np.isnan(value)):
        parts = []
    else:
        parts = str(value).split(sep) if sep is not None else str(value).split()
        parts = [p.strip() for p in parts]
    return tuple(dict.fromkeys(p for p in parts if p))


def read_modules(source: PathLike | pd.DataFrame | ModuleTable, *, tag_separator: str | None = ";",
                 name: str | None = None) -> ModuleTable:
    """Read and validate a modules table.

    Parameters
    ----------
    source : path, DataFrame or ModuleTable
        CSV (``.csv``, optionally compressed), Parquet (``.parquet``/``.pq``) or a
        DataFrame (never modified); a `ModuleTable` (already validated) comes back as it is.
    tag_separator : str or None
        What separates tags inside the ``tags`` string (default ``;``; None: any
        whitespace, as in Riiid's ``questions.csv``). Lists in a DataFrame or Parquet
        column are taken as they are.
    name : str, optional
        What messages call the source.

    Returns
    -------
    ModuleTable

    Raises
    ------
    InteractionLogError
        A missing column, an empty id, a module type other than ``assessment`` /
        ``lesson``, or a (module_id, module_type) listed twice — naming the source,
        the line (row for a DataFrame) and the column.
    """
    if isinstance(source, ModuleTable):
        return source
    if isinstance(source, pd.DataFrame):
        src, row_kind, first = name or "<DataFrame>", "row", 0
        df = source.copy(deep=False)
    else:
        p = Path(source)
        src, row_kind, first = name or str(p), "line", 2
        if p.is_dir():
            raise _fail(src, "is a folder, not a modules table", None, None, row_kind)
        if not p.is_file():
            raise _fail(src, "modules table not found", None, None, row_kind)
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
            row_kind, first = "row", 0
        else:
            try:
                df = pd.read_csv(p, dtype=str, keep_default_na=False)
            except pd.errors.EmptyDataError:
                raise _fail(src, "modules table is empty", None, None, row_kind) from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("module_id", "module_type"):
        if col not in df.columns:
            raise _fail(src, f"modules table lacks column {col!r} (it has {', '.join(map(repr, df.columns))})",
                        1 if row_kind == "line" else None, col, row_kind)
    ids = df["module_id"].astype(str).str.strip()
    types = df["module_type"].astype(str).str.strip().str.lower()
    for mask, column, problem in (
        (((ids == "") | df["module_id"].isna()).to_numpy(), "module_id", "empty module_id"),
        (~types.isin(MODULE_TYPES).to_numpy(), "module_type", "module_type must be 'assessment' or 'lesson'"),
        (pd.DataFrame({"i": ids, "t": types}).duplicated().to_numpy(), "module_id", "module listed twice"),
    ):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            value = df[column].iloc[i]
            raise _fail(src, f"{problem}: {value!r}", i + first, column, row_kind)
    tags = df["tags"] if "tags" in df.columns else pd.Series([()] * len(df))
    out = pd.DataFrame({"module_id": ids.to_numpy(), "module_type": types.to_numpy(),
                        "tags": [_split_tags(v, tag_separator) for v in tags]})
    for c in df.columns:
        if c not in ("module_id", "module_type", "tags"):
            out[c] = df[c].to_numpy()
    return ModuleTable(out, src)


def riiid_modules(questions: PathLike, lectures: PathLike | None = None) -> ModuleTable:
    """Riiid's ``questions.csv`` (space-separated ``tags``, ``part``) and ``lectures.csv``
    (one ``tag``, ``part``) as a modules table, with the ids `read_riiid` gives
    (``q<question_id>``, ``l<lecture_id>``).

    Parameters
    ----------
    questions : path
    lectures : path, optional

    Returns
    -------
    ModuleTable
        Tags ``t<tag>`` (shared by questions and lectures, which use one numbering),
        group ``part``.
    """
    q = pd.read_csv(questions, dtype=str, keep_default_na=False)
    frames = [pd.DataFrame({"module_id": "q" + q["question_id"].str.strip(), "module_type": "assessment",
                            "tags": [tuple(f"t{t}" for t in s.split()) for s in q["tags"]], "part": q["part"]})]
    if lectures is not None:
        lec = pd.read_csv(lectures, dtype=str, keep_default_na=False)
        frames.append(pd.DataFrame({"module_id": "l" + lec["lecture_id"].str.strip(), "module_type": "lesson",
                                    "tags": [(f"t{t.strip()}",) if t.strip() else () for t in lec["tag"]],
                                    "part": lec["part"]}))
    return read_modules(pd.concat(frames, ignore_index=True), name=str(questions))


def ednet_modules(questions: PathLike, lectures: PathLike | None = None) -> ModuleTable:
    """EdNet-KT1/KT4 ``questions.csv`` and ``lectures.csv`` (``;``-separated ``tags``,
    ``part``) as a modules table, with the ids `read_ednet_kt4` gives (``q…``, ``l…``).

    Parameters
    ----------
    questions : path
    lectures : path, optional

    Returns
    -------
    ModuleTable
        Tags ``t<tag>``; group ``part``. EdNet's ``-1`` (no tag) is dropped.
    """
    def tags(s: str) -> tuple[str, ...]:
        return tuple(f"t{t}" for t in s.split(";") if t.strip() and t.strip() != "-1")

    q = pd.read_csv(questions, dtype=str, keep_default_na=False)
    frames = [pd.DataFrame({"module_id": q["question_id"].str.strip(), "module_type": "assessment",
                            "tags": [tags(s) for s in q["tags"]], "part": q["part"]})]
    if lectures is not None:
        lec = pd.read_csv(lectures, dtype=str, keep_default_na=False)
        frames.append(pd.DataFrame({"module_id": lec["lecture_id"].str.strip(), "module_type": "lesson",
                                    "tags": [tags(s) for s in lec["tags"]], "part": lec["part"]}))
    return read_modules(pd.concat(frames, ignore_index=True), name=str(questions))
