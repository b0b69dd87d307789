"""What every reader shares: the DESIGN §2 table assembled from rows already grouped by
student and in time order, and the one-line error naming file, line and column."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

PathLike = str | os.PathLike[str]


def reader_error(problem: str, *, source: PathLike | None = None, row: int | None = None,
           column: str | None = None) -> Exception:
    """Build an InteractionLogError (imported lazily so this module loads on its own)."""
    from bayes_lse.core.errors import InteractionLogError

    kwargs = {"problem": problem, "source": "<inputs>" if source is None else str(source),
              "row": row, "column": column}
    try:  # our row numbers are always text-file line numbers
        return InteractionLogError(**kwargs, row_kind="line")
    except TypeError:  # an errors.py without row_kind
        return InteractionLogError(**kwargs)


def _decode(codes: np.ndarray, uniques: Any) -> pd.Series:
    """A string column from codes into its distinct values, decoded by Arrow."""
    dictionary = pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array([str(u) for u in uniques], type=pa.string())
    )
    return pd.Series(pd.array(dictionary.dictionary_decode(), dtype="str"))


def finish_table(student_id: Any, module_id: Any, is_lesson: np.ndarray, outcome: np.ndarray,
            timestamp: np.ndarray | None = None) -> pd.DataFrame:
    """Assemble the §2 table from rows already grouped by student and in time order.

    The timestep is the number of lessons earlier in the same student's rows.
    """
    # Columns are built from integer codes and the distinct values, never one Python
    # string per row: on ASSISTments (536k rows) that halves the reader's peak memory.
    s_codes, s_uniques = pd.factorize(np.asarray(student_id, dtype=object))
    m_codes, m_uniques = pd.factorize(np.asarray(module_id, dtype=object))
    return finish_table_codes(s_codes, s_uniques, m_codes, m_uniques, is_lesson, outcome, timestamp)


def finish_table_codes(s_codes: np.ndarray, s_uniques: Any, m_codes: np.ndarray, m_uniques: Any,
                  is_lesson: np.ndarray, outcome: np.ndarray,
                  timestamp: np.ndarray | None = None) -> pd.DataFrame:
    """`_finish` from student and module codes (positions in their distinct values,
    numbered in order of first appearance, as `pd.factorize` numbers them)."""
    is_lesson = np.asarray(is_lesson, dtype=bool)
    lessons = is_lesson.astype(np.int64)
    # Lessons earlier in the same student's rows (groupby: robust even if a student recurs).
    before = pd.Series(lessons).groupby(s_codes, sort=False).cumsum().to_numpy()
    timestep = before - lessons
    data = {
        "student_id": _decode(s_codes, s_uniques),
        "module_id": _decode(m_codes, m_uniques),
        "module_type": _decode(is_lesson.astype(np.int64), np.array(["assessment", "lesson"], dtype=object)),
        "outcome": np.where(is_lesson, np.nan, np.asarray(outcome, dtype=np.float64)),
        "timestep": timestep.astype(np.int64),
    }
    if timestamp is not None:
        data["timestamp"] = np.asarray(timestamp, dtype=np.int64)
    return pd.DataFrame(data)
