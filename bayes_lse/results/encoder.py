"""A fit's amortised placement encoder (issue 16): what it is trained on, where it is
saved in the model folder, and placing new students with it.

Files in the model folder (listed and hashed in ``manifest.json`` like the others)::

    encoder.json   the architecture and feature version, the fit it belongs to (config
                   hash), the fingerprint of the module tables it conditions on, the
                   sha256 of its weights, how it was trained
    encoder.npz    the weights and feature standardisation as named float arrays
                   (read with allow_pickle=False)

An encoder is refused on load (`ModelFolderError`) when its files do not match the
manifest, its weights do not match their recorded hash, or it was trained for another
fit (config hash) or other module parameters (fingerprint).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from bayes_lse.inference.encoder import ENCODER_FORMAT, Encoder, ModuleTables, Posterior, histories_from_table, module_tables
from bayes_lse.results import storage

if TYPE_CHECKING:
    from bayes_lse.inference.amortised import ModuleSource
    from bayes_lse.results.posterior import FitResult

ENCODER_FILES = ("encoder.json", "encoder.npz")
#: At most this many posterior draws are used for the simulated training students
TRAIN_DRAWS = 1000


def fit_tables(fitted: FitResult) -> ModuleTables:
    """The module tables an encoder of `fitted` conditions on: posterior means (computed
    once per fitted object: placing one student at a time must not average the draws
    again each time)."""
    cached = fitted.__dict__.get("_encoder_tables")
    if cached is not None and cached[0] is fitted.idata:
        return cached[1]

    def mean(name: str) -> np.ndarray | None:
        return fitted.draws(name).mean(axis=0) if fitted.has(name) else None

    tables = module_tables(mean("requirement"), mean("assessment_bias"), mean("gain"), mean("prerequisite"))
    fitted.__dict__["_encoder_tables"] = (fitted.idata, tables)
    return tables


def fit_id(fitted: FitResult) -> dict[str, Any]:
    return {"config_hash": fitted.config_hash, "method": fitted.method}


def module_source(fitted: FitResult, *, max_steps: int | None = None, max_answers: int | None = None,
                  seed: int | None = 0) -> ModuleSource:
    """What to train an encoder of `fitted` on: its posterior draws (at most TRAIN_DRAWS),
    its priors and variant, and a design like its log's — histories up to the 95th
    percentile of its students' timesteps (≥ 2, ≤ 40 steps unless given), up to the 95th
    percentile of answers per (student, timestep) (1..10), modules as often as in the log."""
    from bayes_lse.inference.amortised import ModuleSource

    rng = np.random.default_rng(seed)
    S = fitted.draws("requirement").shape[0]
    pick = np.sort(rng.choice(S, TRAIN_DRAWS, replace=False)) if S > TRAIN_DRAWS else np.arange(S)

    def draws(name: str) -> np.ndarray | None:
        return fitted.draws(name)[pick] if fitted.has(name) else None

    t = fitted.interactions
    is_a = t["module_type"].astype(str) == "assessment"
    steps = t.groupby("student_id")["timestep"].max().to_numpy() + 1
    per_step = t[is_a].groupby(["student_id", "timestep"]).size().to_numpy()
    if max_steps is None:
        max_steps = int(np.clip(np.ceil(np.quantile(steps, 0.95)) if len(steps) else 2, 2, 40))
    if max_answers is None:
        max_answers = int(np.clip(np.ceil(np.quantile(per_step, 0.95)) if len(per_step) else 1, 1, 10))
    a_ids = pd.Index([str(a) for a in fitted.assessments])
    l_ids = pd.Index([str(x) for x in fitted.lessons])
    a_w = np.bincount(np.maximum(a_ids.get_indexer(t.loc[is_a, "module_id"].astype(str)), 0),
                      minlength=len(a_ids)) + 1.0
    lw = None
    if len(l_ids):
        codes = l_ids.get_indexer(t.loc[~is_a, "module_id"].astype(str))
        lw = np.bincount(codes[codes >= 0], minlength=len(l_ids)) + 1.0
    noise = fitted.learning_noise_draws()
    noise = noise[pick] if np.ndim(noise) and len(noise) == S else noise
    cfg = fitted.model_config
    return ModuleSource(
        requirement=draws("requirement"), assessment_bias=draws("assessment_bias"),
        gain=draws("gain") if cfg.get("lessons", True) else None,
        prerequisite=draws("prerequisite"), noise=noise, priors=cfg["priors"],
        biases=fitted.has("student_bias"), tables=fit_tables(fitted), max_steps=max_steps,
        max_answers=max_answers, assessment_weights=a_w, lesson_weights=lw,
    )


def train_for_fit(fitted: FitResult, *, progress: Callable[[str], None] | None = None,
                  design: dict[str, Any] | None = None, **options: Any) -> Encoder:
    """Train an encoder for `fitted` (needs the extra ``jax``); `options` go to
    `inference.amortised.train_encoder` (hidden, steps, batch_size, learning_rate, seed),
    `design` to `module_source` (max_steps, max_answers)."""
    from bayes_lse.inference.amortised import train_encoder

    source = module_source(fitted, **(design or {}))
    return train_encoder(source, fit_id=fit_id(fitted), progress=progress, **options)


def check_encoder(enc: Encoder, fitted: FitResult, where: str = "encoder") -> None:
    """Refuse an encoder that is not this fit's (`ModelFolderError`)."""
    try:
        enc.check()
    except ValueError as exc:
        raise storage.ModelFolderError(f"{where}: {exc}") from None
    recorded = enc.spec.get("weights_sha256")
    if recorded is not None and recorded != enc.weights_hash():
        raise storage.ModelFolderError(f"{where}: the weights do not match their recorded hash (modified after saving?)")
    mine = enc.spec.get("fit", {}).get("config_hash")
    if mine != fitted.config_hash:
        raise storage.ModelFolderError(f"{where}: trained for another fit (config hash {mine}, this model's is "
                                       f"{fitted.config_hash}); train it again (FittedLSE.train_encoder)")
    if enc.spec.get("module_fingerprint") != fit_tables(fitted).fingerprint():
        raise storage.ModelFolderError(f"{where}: trained on other module parameters than this fit's; "
                                       "train it again (FittedLSE.train_encoder)")
    if enc.n_skills != int(fitted.model_config["n_skills"]) or enc.has_bias != fitted.has("student_bias"):
        raise storage.ModelFolderError(f"{where}: its skills or bias do not match the model's")


def encoder_writers(enc: Encoder) -> dict[str, Callable[[Path], None]]:
    """`storage.write_folder` writers of the encoder's two files."""
    spec = {**enc.spec, "weights_sha256": enc.weights_hash()}

    def write_npz(p: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v, dtype="<f8") for k, v in enc.params.items()})
        p.write_bytes(buf.getvalue())

    return {
        "encoder.json": lambda p: p.write_text(json.dumps(spec, indent=1, sort_keys=True)),
        "encoder.npz": write_npz,
    }


def read_encoder(path: str | Path, fitted: FitResult) -> Encoder | None:
    """The encoder saved in model folder `path` (None if it has none), checked against the
    manifest's hashes and against `fitted`."""
    path = Path(path)
    try:
        manifest = json.loads((path / storage.MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise storage.ModelFolderError(f"{path}: manifest.json cannot be read ({exc})") from None
    files = manifest.get("files", {})
    listed = [f for f in ENCODER_FILES if f in files]
    if not listed:
        if any((path / f).exists() for f in ENCODER_FILES):
            raise storage.ModelFolderError(f"{path}: holds encoder files the manifest does not list; refusing them")
        return None
    if len(listed) != len(ENCODER_FILES):
        raise storage.ModelFolderError(f"{path}: the manifest lists only {', '.join(listed)} of the encoder's files")
    for name in ENCODER_FILES:
        p = path / name
        if not p.is_file():
            raise storage.ModelFolderError(f"{path}: incomplete model folder, {name} is missing")
        if storage.sha256_file(p) != files[name]:
            raise storage.ModelFolderError(f"{path}: {name} does not match its recorded hash (modified after saving?)")
    try:
        spec = json.loads((path / "encoder.json").read_text())
        with np.load(path / "encoder.npz", allow_pickle=False) as z:
            params = {k: np.asarray(z[k], dtype=float) for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable encoder
        raise storage.ModelFolderError(f"{path}: the encoder could not be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != ENCODER_FORMAT:
        raise storage.ModelFolderError(f"{path}: encoder.json is not a bayes-lse encoder of format {ENCODER_FORMAT}")
    enc = Encoder(spec=spec, params=params)
    check_encoder(enc, fitted, where=f"{path}: encoder")
    return enc


def encode_histories(enc: Encoder, fitted: FitResult, table: pd.DataFrame) -> Posterior:
    """The encoder's posterior for every student in `table` (rows of one or many new
    students; DESIGN §2 columns)."""
    maps = fitted.__dict__.get("_encoder_id_maps")
    if maps is None or maps[0] is not fitted.idata:
        maps = (fitted.idata, {str(a): i for i, a in enumerate(fitted.assessments)},
                {str(x): i for i, x in enumerate(fitted.lessons)})
        fitted.__dict__["_encoder_id_maps"] = maps
    h = histories_from_table(table, maps[1], maps[2])
    return enc.posterior(h, fit_tables(fitted))
