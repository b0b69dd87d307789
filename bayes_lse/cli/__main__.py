"""`python -m bayes_lse.cli`: the same as the `bayes-lse` command."""

from bayes_lse.cli.commands import main

main()
