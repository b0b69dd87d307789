"""`bayes_lse.examples`: the public name of `bayes_lse.data.examples`, the blog's toy
logs (Figures 1–4), kept where users have always imported it from."""

from bayes_lse.data.examples import *  # noqa: F403
from bayes_lse.data.examples import __all__  # noqa: F401
