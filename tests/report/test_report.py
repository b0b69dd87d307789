"""The HTML report and the pictures, on canned posteriors (no sampling)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.figure import Figure

from bayes_lse.report import plots
from bayes_lse.report import html as report_mod
from bayes_lse.diagnostics import diagnose
from bayes_lse.report.html import write_report

from canned import HOSTILE_ASSESSMENT, HOSTILE_STUDENT, advi_idata, map_idata, nuts_idata, simulate_truth


class _Page(HTMLParser):
    """Collects tags, attributes and text of a page (and fails on nothing: it just records)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.add(d["id"])

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(hostile_ids=True)


@pytest.fixture(scope="module")
def reports(truth, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    fits = {
        "map": map_idata(truth),
        "advi": advi_idata(truth),
        "nuts": nuts_idata(truth, permuted_chain=1, n_divergent=3),
    }
    # max_rows above the 24 students: every (hostile) id is printed somewhere
    return {m: write_report(dt, out / f"{m}.html", title=f"Canned {m}", max_rows=30) for m, dt in fits.items()}


# --------------------------------------------------------------------------- the page
@pytest.mark.parametrize("method", ["map", "advi", "nuts"])
def test_report_renders_for_each_method(reports, method):
    path = reports[method]
    assert path.exists() and path.suffix == ".html"
    html = path.read_text(encoding="utf-8")
    page = _parse(html)
    for section in ("verdicts", "data", "fit", "pictures", "tables", "embeddings", "versions"):
        assert section in page.ids, section
    assert "t-verdicts" in page.ids
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) >= 4
    text = " ".join(page.text)
    assert f"Canned {method}" in text
    assert method.upper() in text
    assert "Latent skill space" in text and "Vector field of skill gains" in text
    assert "could not be drawn" not in text
    # verdicts come before everything else in the document
    assert html.index('id="verdicts"') < html.index('id="data"') < html.index('id="pictures"')


def test_report_sections_by_method(reports):
    nuts = reports["nuts"].read_text(encoding="utf-8")
    for s in ("R-hat (identified)", "Divergences", "E-BFMI", "Trace and rank plots", "Energy", "Skill alignment",
              "PSIS-LOO", "Relabelled skills of chain(s) 1"):
        assert s in nuts
    advi = reports["advi"].read_text(encoding="utf-8")
    assert "ADVI convergence" in advi and "ELBO" in advi
    map_ = reports["map"].read_text(encoding="utf-8")
    assert "MAP optimiser" in map_ and "MAP optimiser, per start" in map_
    assert "Trace and rank plots" not in map_


@pytest.mark.parametrize("method", ["map", "advi", "nuts"])
def test_report_is_self_contained(reports, method):
    page = _parse(reports[method].read_text(encoding="utf-8"))
    for tag, attrs in page.tags:
        for attr in ("src", "href", "srcset", "action", "data", "poster"):
            value = attrs.get(attr)
            if value is None:
                continue
            assert value.startswith(("data:image/png;base64,", "#")), f"<{tag} {attr}={value[:60]!r}>"
        assert tag not in ("link", "iframe", "object", "embed", "base")
        if tag == "script":
            assert "src" not in attrs
    html = reports[method].read_text(encoding="utf-8")
    assert "@import" not in html and "url(" not in html


def test_hostile_ids_are_escaped(reports):
    for path in reports.values():
        html = path.read_text(encoding="utf-8")
        assert HOSTILE_STUDENT not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=alert(2)&gt;" in html
        page = _parse(html)
        # the parsed page shows the ids as text ...
        text = "".join(page.text)
        assert HOSTILE_ASSESSMENT in text
        # ... and holds no element the data injected
        assert sum(1 for t, _ in page.tags if t == "script") == 1  # our table sorter only
        assert all(a.get("src", "").startswith("data:") for t, a in page.tags if t == "img")


def test_report_overwrites_atomically(truth, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("previous report", encoding="utf-8")

    def boom(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(report_mod, "render_report", boom)
    with pytest.raises(RuntimeError):
        write_report(map_idata(truth), target)
    assert target.read_text(encoding="utf-8") == "previous report"
    monkeypatch.undo()

    real_replace = report_mod.os.replace

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report_mod.os, "replace", fail_replace)
    with pytest.raises(OSError):
        write_report(map_idata(truth), target)
    assert target.read_text(encoding="utf-8") == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left behind
    monkeypatch.setattr(report_mod.os, "replace", real_replace)
    out = write_report(map_idata(truth), target)
    assert out == target and target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_report_creates_folder_and_caps_rows(truth, tmp_path):
    tr = simulate_truth(n_students=40, n_assessments=30, seed=11)
    path = write_report(nuts_idata(tr, draws=100), tmp_path / "sub" / "dir" / "r.html", max_rows=5)
    html = path.read_text(encoding="utf-8")
    assert "Showing 5 of 30 rows." in html
    assert "the 5 hardest by |a|" in html


def test_report_reuses_given_diagnostics_and_options(tmp_path):
    tr = simulate_truth(n_skills=3, n_students=12, seed=3)
    dt = nuts_idata(tr, draws=100)
    d = diagnose(dt, loo=False)
    path = write_report(dt, tmp_path / "r.html", diagnostics=d, skills=(0, 2), lesson="L1")
    html = path.read_text(encoding="utf-8")
    assert "t-loo" not in html and "t-pareto_k" not in html  # the given diagnostics were used as they are
    with pytest.raises(ValueError):
        plots.plot_skill_space(dt, skills=(0, 5))


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_skills=1), dict(n_skills=3), dict(prerequisites=False, biases=False), dict(n_lessons=0)],
    ids=["d1", "d3", "plain", "no-lessons"],
)
def test_report_model_variants(kwargs, tmp_path):
    tr = simulate_truth(n_students=10, seed=5, **kwargs)
    html = write_report(nuts_idata(tr, draws=80), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "could not be drawn" not in html
    _parse(html)


def test_report_thresholds_reach_diagnose(truth, tmp_path):
    dt = nuts_idata(truth, stuck_chain=2, draws=100)
    html = write_report(dt, tmp_path / "r.html", thresholds={"rhat_max": 5.0, "rhat_fail": 9.0}).read_text()
    assert "≤ 5.0 (fail &gt; 9.0)" in html


# --------------------------------------------------------------------------- pictures
def _dollar_truth():
    """Ids that would start matplotlib mathtext if passed through unescaped."""
    tr = simulate_truth(n_students=8, seed=2)
    tr.student_ids[0] = "$x_{1"
    tr.lesson_ids[0] = "a$b"
    tr.assessment_ids[0] = "$\\frac{1}{0}$"
    tr.table["student_id"] = [tr.student_ids[u] for u in tr.table["student"]]
    return tr


@pytest.mark.parametrize("n_skills", [1, 2, 3])
def test_plots_return_figures(n_skills, tmp_path):
    tr = simulate_truth(n_skills=n_skills, n_students=10, seed=1) if n_skills != 2 else _dollar_truth()
    dt = nuts_idata(tr, draws=60, permuted_chain=1 if n_skills > 1 else None)
    d = diagnose(dt, loo=False)
    figs = [
        plots.plot_trace_rank(d),
        plots.plot_trace_rank(dt, n=2),
        plots.plot_energy(dt),
        plots.plot_skill_space(dt, aligned=d.aligned),
        plots.plot_skill_space(dt, students=[tr.student_ids[0]], max_students=1),
        plots.plot_gain_field(dt, aligned=d.aligned),
        plots.plot_gain_field(dt, lesson=tr.lesson_ids[0]),
        plots.plot_calibration(d),
        plots.plot_calibration(dt),
        plots.plot_pass_rates(d),
        plots.plot_elbo(advi_idata(tr)),
        plots.plot_elbo(dt),  # no loss: a figure saying so
        plots.plot_energy(map_idata(tr)),
        plots.plot_trace_rank(diagnose(map_idata(tr))),
    ]
    for i, fig in enumerate(figs):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{i}.png", dpi=40)  # drawing is where mathtext would fail


def test_choose_skills_prefers_most_variance():
    tr = simulate_truth(n_skills=3, n_students=10, seed=1)
    tr.state[:, 1] *= 10
    tr.requirement[:, 1] *= 10
    dt = nuts_idata(tr, draws=20)
    aligned = dt["posterior"].to_dataset()
    i, j = plots.choose_skills(aligned)
    assert 1 in (i, j)
    assert plots.choose_skills(aligned, (2, 0)) == (2, 0)


def test_unknown_student_or_lesson_is_refused(truth):
    dt = nuts_idata(truth, draws=20)
    with pytest.raises(KeyError):
        plots.plot_skill_space(dt, students=["nobody"])
    with pytest.raises(KeyError):
        plots.plot_gain_field(dt, lesson="no such lesson")


# --------------------------------------------------------------------------- scale
@pytest.mark.slow
def test_thousand_student_nuts_report_stays_readable(tmp_path):
    """A 1,000-student NUTS fit still gives a page a person can read: rows capped,
    problems flagged, size bounded.  Its time (target < 30 s) is measured by
    `python -m benchmarks.bench_report`, not asserted here: the machines are shared."""
    tr = simulate_truth(n_students=1000, n_assessments=50, n_lessons=20, max_lessons=9, answers_per_state=3, seed=5)
    dt = nuts_idata(tr, draws=250, permuted_chain=3, n_divergent=10)
    html = write_report(dt, tmp_path / "big.html").read_text(encoding="utf-8")
    assert "Showing 20 of 50 rows." in html
    assert "Relabelled skills of chain(s) 3" in html and "Divergences" in html
    assert len(html) < 5_000_000, f"{len(html) / 1e6:.1f} MB"


# --------------------------------------------------------------------------- the first screen
def test_first_screen_says_whether_to_trust_and_what_was_learned(reports, truth):
    """Issue 20: the first thing on the page answers "can I trust this fit?" (the checks that
    did not pass, each linked to its evidence) and "what did it learn?" (numbers from the
    posterior)."""
    html = reports["nuts"].read_text(encoding="utf-8")
    page = _parse(html)
    assert html.index('id="summary"') < html.index('id="verdicts"') < html.index('id="data"')
    trust = html[html.index('id="trust"'):html.index('id="learned"')]
    # the canned NUTS fit has 3 divergences (a failure) and influential answers (a warning)
    assert "Divergences" in trust and "PSIS-LOO Pareto k" in trust
    assert trust.index("Divergences") < trust.index("PSIS-LOO")  # failures first
    assert 'href="#t-divergence_implicated"' in trust or 'href="#t-chains"' in trust
    # every in-page link lands on something that exists
    hrefs = [a["href"][1:] for t, a in page.tags if t == "a" and (a.get("href") or "").startswith("#")]
    assert hrefs and not [h for h in hrefs if h not in page.ids]
    # the lesson that teaches most, with its posterior mean gain length
    import bayes_lse.report.html as rep
    from canned import nuts_idata

    post = nuts_idata(truth, permuted_chain=1, n_divergent=3)["posterior"].to_dataset()
    g = np.linalg.norm(post["gain"].values, axis=-1).reshape(-1, post.sizes["lesson"])
    best = int(np.argmax(g.mean(0)))
    learned = html[html.index('id="learned"'):html.index('id="verdicts"')]
    assert f"{post['lesson'].values[best]} {g[:, best].mean():.2f}" in learned
    assert rep.GLOSSARY  # the glossary the page links to


def test_every_verdict_links_to_its_evidence_and_jargon_is_defined(reports):
    for method in ("map", "nuts"):
        html = reports[method].read_text(encoding="utf-8")
        page = _parse(html)
        verdicts = html[html.index('id="t-verdicts"'):html.index("</table>", html.index('id="t-verdicts"'))]
        rows = verdicts.split("<tr>")[2:]
        assert rows
        linked = [r for r in rows if 'href="#' in r]
        # every check except ones with no table of their own (none today) links to evidence
        assert len(linked) == len(rows), [r[:80] for r in rows if 'href="#' not in r]
        glossary = html[html.index('id="glossary"'):html.index('id="versions"')]
        for term in ("skill alignment", "relevance", "R-hat", "ESS", "E-BFMI", "Pareto k", "identified quantity"):
            assert f">{term}" in glossary, term
        assert "g-skill-alignment" in page.ids
    nuts = reports["nuts"].read_text(encoding="utf-8")
    assert 'title="Skill axes carry no names' in nuts  # hover text on the check's name


def test_skill_space_zooms_on_the_modules_when_paths_are_long(tmp_path):
    """Issue 20: with long histories students drift far from the modules and every module
    label piled up by the origin.  Now a second panel zooms on the modules (its limits
    cover them and stay well inside the paths' extent) and only it labels them; students
    are labelled at their paths' ends."""
    import bayes_lse as bl
    from bayes_lse.report import plots

    c = bl.simulate(n_students=16, n_steps=25, n_assessments=6, n_lessons=3, seed=3)
    f = bl.LatentSkillEmbedding(n_skills=2).fit(c.table, method="map", starts=1, maxiter=300, seed=1,
                                               engine="kernel", progressbar=False)  # no compile
    fig = plots.plot_skill_space(f.idata, max_labels=4)
    whole, zoom = fig.axes[:2]
    req = np.asarray(f.idata["posterior"]["requirement"].values).reshape(-1, 6, 2).mean(0)
    assert zoom.get_xlim()[1] >= req[:, 0].max() and zoom.get_ylim()[1] >= req[:, 1].max()
    assert whole.get_xlim()[1] > 3 * zoom.get_xlim()[1] or whole.get_ylim()[1] > 3 * zoom.get_ylim()[1]
    module_labels = set(f.assessments) | set(f.lessons)
    assert not [t.get_text() for t in whole.texts if t.get_text() in module_labels]
    zoom_labels = [t.get_text() for t in zoom.texts if t.get_text() in module_labels]
    assert 0 < len(zoom_labels) <= 4 + 3  # at most max_labels assessments and every lesson
    assert all("(step 0)" not in t.get_text() for t in whole.texts)


def test_sampler_pictures_sit_by_their_tables_and_long_tables_fold(reports):
    """Issue 20: trace plots were ~2,500 px away from the convergence table they explain and
    the page was ~13,500 px tall (canned NUTS fit, chromium at 1280 px); now pictures of the
    sampler sit right above their tables and per-entity tables fold (11,600 px with the new
    first screen and glossary).  A link into a folded table opens it (script)."""
    html = reports["nuts"].read_text(encoding="utf-8")
    trace, table = html.index('id="fig-trace"'), html.index('id="t-identified_summary"')
    assert trace < table and html.count("<figure", trace, table) == 0  # nothing between them
    assert html.index('id="fig-energy"') < html.index('id="t-chains"')
    folded = html[html.rindex("<details>", 0, html.index('id="t-identified"')):html.index('id="t-identified"')]
    assert "</details>" not in folded
    assert 'p.tagName === "DETAILS"' in html


# --------------------------------------------------------------------------- a real browser
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.browser
def test_report_in_headless_chromium(reports, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); "
                    "the headless-browser check of the report was not run")
    url = reports["nuts"].resolve().as_uri()
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000",
         f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=180,
    )
    dom = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    logs = run.stderr + dom.stderr
    # Chromium logs every console message of the page as "...:CONSOLE:<line>] "<text>", source: ...";
    # the report logs nothing, so any such line (an uncaught error, a failed load) is a failure.
    console = [line for line in logs.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    assert run.returncode == 0, logs[-2000:]
    assert dom.returncode == 0, logs[-2000:]
    assert 'id="t-verdicts"' in dom.stdout and "Latent skill space" in dom.stdout
    assert HOSTILE_STUDENT not in dom.stdout  # still text after the browser parsed it
    assert shot.exists()
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 500
    assert float(np.std(pixels[..., :3])) > 0.05, "the screenshot is blank"
    # the first screen (top 900 px at 1280 wide) shows the FAIL banner's red (#cf222e) and
    # both answers, text on a light page
    top = pixels[:900, :, :3]
    red = (np.abs(top[..., 0] - 0xCF / 255) < 0.06) & (np.abs(top[..., 1] - 0x22 / 255) < 0.06) \
        & (np.abs(top[..., 2] - 0x2E / 255) < 0.06)
    assert red.sum() > 500, "no FAIL banner on the first screen"
    assert 0.6 < float(top.mean()) < 0.99, "the first screen is blank or dark"
    assert "Can I trust this fit?" in dom.stdout and "What did it learn?" in dom.stdout


def test_report_states_the_history_terms_coefficients(tmp_path, tiny_cohort):
    """A model with the history term: "What did it learn?" gives all three coefficients,
    the recency one with what R is."""
    import bayes_lse as bl

    f = bl.LatentSkillEmbedding(n_skills=1, history=True).fit(tiny_cohort.table, method="map", starts=1, seed=0,
                                                              progressbar=False)
    html = f.report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Practice effect" in html and "γ_s = " in html and "γ_f = " in html
    assert "recency γ_r = " in html and "answers since the last answer to it" in html
