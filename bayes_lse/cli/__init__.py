"""Stage 9, the `bayes-lse` command line: the commands (`commands`), what they share
(`common`), `evaluate` and `demo`.  `main` is the console script's entry point."""

from bayes_lse.cli.commands import main

__all__ = ["main"]
