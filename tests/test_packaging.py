"""pyproject.toml and environment.yml list the same dependencies; the layout the README promises exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = dict(_norm(r) for r in py["project"]["dependencies"] + py["project"]["optional-dependencies"]["test"])
    env_deps = {}
    text = (ROOT / "environment.yml").read_text()
    deps_block = text.split("dependencies:", 1)[1]
    for line in deps_block.splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.\-]+[^#]*)$", line)
        if m and not m.group(1).startswith(("pip", "-e")):
            name, spec = _norm(m.group(1).strip())
            if name != "python":
                env_deps[name] = spec
    assert env_deps == wanted


def test_python_requirement():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert py["project"]["requires-python"] == ">=3.12"
    assert "python=3.12" in (ROOT / "environment.yml").read_text()
    assert py["project"]["scripts"]["bayes-lse"] == "bayes_lse.cli:main"


def test_layout():
    for p in ["bayes_lse", "models/README.md", "reports/README.md", "tests", "Makefile", ".ci/run",
              "ARCHITECTURE.md", "README.md", "environment.yml"]:
        assert (ROOT / p).exists(), p
    assert "make test" in (ROOT / ".ci/run").read_text()
