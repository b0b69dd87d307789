"""The names the evaluation accepts — protocols, baselines, LSE variants — with no heavy
imports, so the command line can offer them in `--help` without loading PyMC and SciPy
(issue 20: `bayes-lse --help` took 3.4 s, 2.2 s of it importing the baselines' stack).
`protocols` and `baselines` re-export them."""

from __future__ import annotations

#: evaluation protocols (see `protocols` module doc)
PROTOCOLS = ("last-batch", "last-fraction")
#: baseline names accepted by `baselines.make_baseline` (``mirt`` also as ``mirt-d<d>``)
BASELINES = ("student-rate", "assessment-rate", "irt1pl", "irt2pl", "mirt", "pfa", "pfa-online")
#: what `evaluate` runs when `models` is not given (besides one LSE)
DEFAULT_BASELINES = ("student-rate", "assessment-rate", "irt1pl", "irt2pl", "mirt", "pfa")
#: recommenders `evaluate_paths` compares the LSE with (see `evaluate.paths`)
PATH_BASELINES = ("popular", "random", "no-lessons")
#: how `evaluate_paths` cuts a held-out student's history at its bubble starts
PATH_CUTS = ("each", "earliest")
#: LSE variants by name, as model-config overrides
VARIANTS = {
    "full": {},
    "no-prerequisites": {"prerequisites": False},
    "no-biases": {"biases": False},
    "no-lessons": {"lessons": False},
    # lessons kept whatever the fit's held-out check says (the default, "full", lets it drop them)
    "lessons": {"lessons": True},
    "history": {"history": True},
}
