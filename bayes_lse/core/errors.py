"""Errors a user can act on.

Bad input must never surface as a traceback from deep inside pandas or PyMC
(DESIGN §2): it gets one line naming the source, the row and the column.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

__all__ = ["InteractionLogError"]


class InteractionLogError(ValueError):
    """An interaction log that cannot be used, with where and why.

    Attributes
    ----------
    source : the file path as given, or ``"<DataFrame>"`` (or the ``name`` passed
        to :func:`bayes_lse.data.log.read_interactions`).
    row : where the problem is, as the user counts it: the file line number for
        a CSV file (header = line 1), the 0-based row position for a Parquet
        file, the index label for a DataFrame; ``None`` when no single row is
        to blame.
    column : the column at fault, or ``None``.
    problem : what is wrong, in words.
    row_kind : ``"line"`` (text files) or ``"row"``; only changes the wording.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        row: int | Hashable | None = None,
        column: str | None = None,
        row_kind: Literal["line", "row"] = "row",
    ) -> None:
        self.source = str(source)
        self.row = row
        self.column = column
        self.problem = problem
        self.row_kind = row_kind
        super().__init__(self._message())

    def _message(self) -> str:
        where = [self.source]
        if self.row is not None:
            where.append(f"{self.row_kind} {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        text = f"{', '.join(where)}: {self.problem}"
        # One line, always: a problem quoting user text must not break it.
        return text.replace("\r", " ").replace("\n", " ")

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # picklable despite keyword-only arguments
        return (_rebuild, (self.source, self.problem, self.row, self.column, self.row_kind))


def _rebuild(source, problem, row, column, row_kind) -> InteractionLogError:
    return InteractionLogError(source, problem, row=row, column=column, row_kind=row_kind)
