"""The blog post's toy scenarios (Figures 1-4) as ready-made interaction logs.

Each is a DataFrame in the DESIGN §2 schema with explicit timesteps, so
``read_interactions(load_example(name))`` gives an :class:`InteractionLog`.
The scenarios are tiny (one answer per student, assessment and step), so by
default every answer is repeated ``repeats`` times at the same timestep: the
pattern is unchanged but there is enough evidence for a model to recover the
geometry the blog describes instead of sitting at the prior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_REPEATS", "EXAMPLES", "load_example"]

#: Default number of times each toy answer is repeated (same student, same step).
DEFAULT_REPEATS = 10

EXAMPLES: dict[str, str] = {
    "alice": "Fig. 1: Alice fails A1, completes L1, then passes A1 (one skill suffices).",
    "intransitive": (
        "Fig. 2: Fogell fails A1 and A2, McLovin passes both, Evan passes only A2, "
        "Seth only A1 (needs two independent skills)."
    ),
    "orthogonal_lessons": (
        "Fig. 3: Fig. 2 plus Slater (like Evan) who reads L1 and Michaels (like Seth) "
        "who reads L2, after which both pass A1 and A2 (orthogonal lesson gains)."
    ),
    "prerequisites": (
        "Fig. 4: Fig. 2 plus A3 and L1: all four fail A3, read L1, then only McLovin "
        "passes A3 (only he meets L1's prerequisites)."
    ),
}

# One event per tuple: (student, module, "a"/"l", outcome or None, timestep).
_Event = tuple[str, str, str, int | None, int]

_INTRANSITIVE: list[_Event] = [
    ("Fogell", "A1", "a", 0, 0),
    ("Fogell", "A2", "a", 0, 0),
    ("McLovin", "A1", "a", 1, 0),
    ("McLovin", "A2", "a", 1, 0),
    ("Evan", "A1", "a", 0, 0),
    ("Evan", "A2", "a", 1, 0),
    ("Seth", "A1", "a", 1, 0),
    ("Seth", "A2", "a", 0, 0),
]

_SCENARIOS: dict[str, list[_Event]] = {
    "alice": [
        ("Alice", "A1", "a", 0, 0),
        ("Alice", "L1", "l", None, 0),
        ("Alice", "A1", "a", 1, 1),
    ],
    "intransitive": _INTRANSITIVE,
    "orthogonal_lessons": _INTRANSITIVE
    + [
        ("Slater", "A1", "a", 0, 0),
        ("Slater", "A2", "a", 1, 0),
        ("Slater", "L1", "l", None, 0),
        ("Slater", "A1", "a", 1, 1),
        ("Slater", "A2", "a", 1, 1),
        ("Michaels", "A1", "a", 1, 0),
        ("Michaels", "A2", "a", 0, 0),
        ("Michaels", "L2", "l", None, 0),
        ("Michaels", "A1", "a", 1, 1),
        ("Michaels", "A2", "a", 1, 1),
    ],
    # Fig. 2's answers, then per student: fail A3, read L1, then A3 again
    # (pass for McLovin only). Rows are grouped by student, in time order.
    "prerequisites": [
        ev
        for student, passes_after in [
            ("Fogell", 0),
            ("McLovin", 1),
            ("Evan", 0),
            ("Seth", 0),
        ]
        for ev in [e for e in _INTRANSITIVE if e[0] == student]
        + [
            (student, "A3", "a", 0, 0),
            (student, "L1", "l", None, 0),
            (student, "A3", "a", passes_after, 1),
        ]
    ],
}


def load_example(name: str, repeats: int = DEFAULT_REPEATS) -> pd.DataFrame:
    """A toy scenario from the blog post as a DESIGN §2 DataFrame.

    Columns ``student_id, module_id, module_type, outcome, timestep``; ``outcome``
    is float (NaN for lessons). Every assessment answer appears ``repeats``
    times in a row (same student, module and timestep); lessons appear once,
    since a step holds one lesson. ``repeats=1`` gives the figures' data as is.

    Parameters
    ----------
    name : str
        One of `EXAMPLES`.
    repeats : int
        How many times each answer is repeated (default `DEFAULT_REPEATS`): one
        answer per step is too little evidence for a posterior to say anything.

    Returns
    -------
    pandas.DataFrame
        The log, ready for `read_interactions` or `LatentSkillEmbedding.fit`.
    """
    if name not in _SCENARIOS:
        raise ValueError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    rows = []
    for student, module, kind, outcome, step in _SCENARIOS[name]:
        if kind == "l":
            rows.append((student, module, "lesson", np.nan, step))
        else:
            rows.extend([(student, module, "assessment", float(outcome), step)] * int(repeats))
    df = pd.DataFrame(
        rows, columns=["student_id", "module_id", "module_type", "outcome", "timestep"]
    )
    return df.astype(
        {
            "student_id": "str",
            "module_id": "str",
            "module_type": "str",
            "outcome": "float64",
            "timestep": "int64",
        }
    )
