"""CCA, prediction similarity, CCA vs AUC gain, figures and report of a finished grid.

``run(workdir)`` is the door (the command line is ``jaxtransfer.analyze``). It
reads a finished workdir of `jaxtransfer.grid` (config.json, AUC.csv, each run's
model/ and test_predictions.npz) and writes into RUN/analysis/, each file
atomically:

- CCA_<target>.csv: the paper's 14 pairs per fold (docs/protocol.md#cca), paper schema;
  stimuli are the fold's held-out images (test, or val + test in v1, as the
  similarity analysis) at config.analysis.image_size (the column holds the target
  name as in the paper; the split and size are recorded in
  CCA_<target>_sampling.json with the seed, n_img, datapoints, channel indices and
  image order of every repetition).
- similarity.csv (docs/protocol.md#prediction-similarity, paper schema) and
  similarity_details.csv (accuracies and the symmetric baseline too).
- simVSaucImNet.csv, simVSaucRadNet.csv (docs/protocol.md#cca-vs-auc-gain, CCA
  schema) and gain_stats.csv (OLS slope, intercept, Pearson r, p per source and
  layer over this target's folds only; the paper's pooled numbers take 7 targets:
  `python -m jaxtransfer.pool`).
- AUC_mean.csv (paper schema), figures (PNG + PDF), report.md. With --reference
  pointing at the paper's result CSVs, report.md puts the paper's numbers beside
  this run's (for the CCA vs AUC gain, the paper's regression over this target).
- with --full_depth: CCA_full_<target>.csv, conv1 and all block outputs on all
  channels and all stimuli (streamed covariances; beyond the paper).

Options left out take the run's recorded config (config.json: config.seed and
config.analysis), so a second analysis reproduces the grid's own.
"""

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jaxtransfer import models
from jaxtransfer.analysis import (
    figures,
    pairs,
    report,
    sampling,
    similarity,
    tables,
)
from jaxtransfer.analysis.cca import resolve_decomposition
from jaxtransfer.data import loader
from jaxtransfer.grid import inputs
from jaxtransfer.models import layers, pretrained
from jaxtransfer.runtime import files

log = logging.getLogger(__name__)


def _number(value: float) -> str:
    return "" if not np.isfinite(value) else repr(float(value))


# --- networks of a fold ----------------------------------------------------------


def _random_seed(seed: int, fold: int, k: int) -> int:
    """Integer seed of the fold's k-th fresh random initialisation."""
    return int(np.random.SeedSequence([seed, fold, k]).generate_state(1)[0])


def networks_of_fold(
    workdir: Path, config: ConfigDict, fold: int, seed: int
) -> tuple[dict[str, pairs.Network], list[str]]:
    """Every network available for the fold's pairs, loaded lazily, and notes."""
    target, notes, networks = config.target, [], {}
    template = None
    for source in pairs.INITS:
        for freeze in (False, True):
            directory = workdir / f"{source}-freeze{freeze}" / f"fold{fold}" / "model"
            if not pretrained.is_checkpoint(directory):
                continue
            template = template or pretrained.read_metadata(directory)
            name = pairs.finetuned_name(target, source, freeze)
            networks[name] = pairs.Network(
                name,
                lambda d=directory: _load_checkpoint(d),
                f"fine-tuned: {directory}",
            )
    for source in pairs.INITS:
        path = Path(config.init[source])
        if pretrained.is_checkpoint(path):
            networks[source] = pairs.Network(
                source, lambda p=path: _load_checkpoint(p), f"init: {path}"
            )
        else:
            notes.append(f"fold{fold}: no {source} checkpoint at {path}")
    for k, name in enumerate((pairs.RANDOM, pairs.SECOND_RANDOM)):
        random_seed = _random_seed(seed, fold, k)
        networks[name] = pairs.Network(
            name,
            lambda s=random_seed: _random_network(config, template, s),
            f"fresh random init, nnx.Rngs({random_seed})",
        )
    return networks, notes


def _with_preprocessing(model: layers.Backbone) -> tuple[layers.Backbone, str]:
    return model, pretrained.PREPROCESSING[model.variant]


def _load_checkpoint(directory: Path) -> tuple[layers.Backbone, str]:
    model, metadata = pretrained.load(directory)
    return model, metadata["preprocessing"]


def _random_network(config, template: dict | None, seed: int):
    """A fresh (Keras-initialised) backbone with the architecture of the run."""
    rngs = nnx.Rngs(seed)
    if template is not None:
        meta = {**template, "num_classes": None, "head_dropout": 0.0}
        return pretrained.build_model(meta, rngs), template["preprocessing"]
    make = models.get(config.model.name)
    return _with_preprocessing(make(num_classes=None, rngs=rngs))


# --- the analysis ----------------------------------------------------------------


def cca_stimuli(config: ConfigDict, fold: int) -> tuple[np.ndarray, str]:
    """The fold's held-out images at the CCA image size, and what they are.

    The held-out part the similarity analysis predicts too: the test split (v2),
    or val + test (v1, which holds out both). At `inputs.cca_image_size`
    (CCA.py built 224 px networks for breast, mammograms and thyroid:
    docs/protocol.md#image-sizes).
    """
    size = inputs.cca_image_size(config)
    if not inputs.is_prepared(config, size):
        raise FileNotFoundError(inputs.unprepared_message(config, size, "CCA stimuli"))
    directory = inputs.dataset_dir(config, size)
    parts = ("val", "test") if config.protocol == "v1" else ("test",)
    images = [loader.load_split(directory, f"fold{fold}_{p}").images for p in parts]
    split = " + ".join(f"fold{fold}_{p}" for p in parts)
    return np.concatenate(images), f"{split} (held out), {size} px"


def cca_of_fold(
    workdir: Path,
    config: ConfigDict,
    fold: int,
    *,
    seed: int,
    batch_size: int,
    full_depth: bool,
    decomposition: str = "linalg",
) -> dict:
    """The fold's CCA rows (and full-depth rows), sampling details and notes."""
    target = config.target
    networks, notes = networks_of_fold(workdir, config, fold, seed)
    wanted = pairs.paper_pairs(target)
    available = [p for p in wanted if p[0] in networks and p[1] in networks]
    for p in wanted:
        if p not in available:
            notes.append(f"fold{fold}: pair {p[0]} vs {p[1]} skipped (model missing)")
    result = {"rows": [], "full_rows": [], "notes": notes, "sampling": None}
    if not available:
        return result
    stimuli, stimuli_split = cca_stimuli(config, fold)
    # Tap shapes from an abstract copy of the architecture (no weights initialised).
    probe = nnx.eval_shape(lambda: networks[pairs.RANDOM].load()[0])
    shapes = sampling.tap_shapes(probe, stimuli.shape[1:3], probe.study_taps)
    plan = sampling.make_plan(shapes, len(stimuli), seed=(seed, fold))
    start = time.perf_counter()
    fold_cca = pairs.paper_cca(
        networks,
        available,
        stimuli,
        plan,
        batch_size,
        decomposition=decomposition,
    )
    seconds = time.perf_counter() - start
    notes += [f"fold{fold}: {n}" for n in fold_cca.notes]
    for (m1, m2), values in zip(available, fold_cca.values):
        result["rows"].append(
            {
                "model1": pairs.csv_name(m1),
                "model2": pairs.csv_name(m2),
                "fold": f"fold{fold}",
                "stimuli": target,
                **{layer: _number(v) for layer, v in zip(sampling.LAYER_NAMES, values)},
            }
        )
    used = {n for p in available for n in p}
    result["sampling"] = {
        "stimuli": stimuli_split,
        "image_size": int(stimuli.shape[1]),
        "seconds": seconds,
        "decomposition": decomposition,
        "networks": {n: networks[n].description for n in networks if n in used},
        "per_repetition": {
            f"{pairs.csv_name(m1)} vs {pairs.csv_name(m2)}": fold_cca.repetitions[
                :, k
            ].tolist()
            for k, (m1, m2) in enumerate(available)
        },
        **plan.describe(),
    }
    if full_depth:
        start = time.perf_counter()
        full = pairs.full_depth_cca(
            networks,
            available,
            stimuli,
            batch_size=max(1, batch_size // 2),
            decomposition=decomposition,
        )
        result["full_seconds"] = time.perf_counter() - start
        result["full_taps"] = full.taps
        notes += [f"fold{fold} full depth: {n}" for n in full.notes]
        for (m1, m2), values in zip(available, full.values):
            result["full_rows"].append(
                {
                    "model1": pairs.csv_name(m1),
                    "model2": pairs.csv_name(m2),
                    "fold": f"fold{fold}",
                    "stimuli": target,
                    **{t: _number(v) for t, v in zip(full.taps, values)},
                }
            )
    return result


def similarity_rows(workdir: Path, config: ConfigDict) -> tuple[list, list, list]:
    """similarity.csv rows, detail rows, and notes from the runs' test predictions."""
    rows, details, notes = [], [], []
    for freeze in config.grid.freeze:
        for fold in config.grid.folds:
            files = [
                workdir / f"{s}-freeze{freeze}" / f"fold{fold}" / "test_predictions.npz"
                for s in pairs.INITS
            ]
            if not all(f.is_file() for f in files):
                notes.append(
                    f"similarity freeze{freeze} fold{fold}: predictions missing"
                )
                continue
            first, second = (np.load(f) for f in files)
            if not np.array_equal(first["paths"], second["paths"]):
                raise ValueError(f"{files}: the two runs predicted different images")
            sim = similarity.prediction_similarity(
                first["probs"], second["probs"], first["labels"]
            )
            common = {
                "target": config.target,
                "model1": "ImageNet",
                "model2": "RadImageNet",
                "freeze": f"freeze{freeze}",
                "fold": f"fold{fold}",
            }
            for prob in ("real", "rand"):
                rows.append({**common, "prob": prob, "value": repr(sim[prob])})
            details.append({**common, **sim})
    return rows, details, notes


def conv1_kernels(workdir: Path, config: ConfigDict, networks: dict) -> dict:
    """First-conv kernels (k, k, 3, F) of the initialisations and fold-1 fine-tuned
    runs (ResNet's conv1, 7x7)."""
    kernels = {}
    for name in (*pairs.INITS, pairs.RANDOM):
        if name in networks:
            model, _ = networks[name].load()
            kernels[name] = np.asarray(model.stem_conv.kernel[...])
    for source in pairs.INITS:
        name = pairs.finetuned_name(config.target, source, False)
        if name in networks:
            model, _ = networks[name].load()
            kernels[f"{source}-ft"] = np.asarray(model.stem_conv.kernel[...])
    return kernels


class NotAFinishedGrid(FileNotFoundError):
    """The workdir is not (yet) one that `jaxtransfer.main` finished."""


def check_finished(workdir: Path) -> None:
    """Raises NotAFinishedGrid unless ``workdir`` holds a finished grid's results."""
    missing = [n for n in ("config.json", "AUC.csv") if not (workdir / n).is_file()]
    if missing:
        raise NotAFinishedGrid(
            f"{workdir}: no {' or '.join(missing)}. --workdir must be the workdir of "
            "a finished `python -m jaxtransfer.main` run (its grid writes AUC.csv "
            "when every run is done; re-running the same command finishes it)"
        )


def run(
    workdir: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    *,
    full_depth: bool | None = None,
    seed: int | None = None,
    batch_size: int = 32,
    cca: bool = True,
    decomposition: str | None = None,
) -> dict:
    """Analyses a finished workdir; writes everything into ``workdir/analysis``.

    Settings left at None take the run's recorded config (its config.json), so
    analysing a workdir again reproduces what `grid.run` wrote.

    Args:
      workdir: a finished `grid.run` workdir.
      reference: directory of the paper's result CSVs (AUC.csv, AUC_mean.csv,
        CCA_<target>.csv, similarity.csv, simVSauc*.csv) for the side-by-side
        report; "" for this run's numbers only; None: config.analysis.reference.
      full_depth: also the streamed all-channel CCA at every block; None:
        config.analysis.full_depth.
      seed: seed of the CCA samples and the fresh random initialisations; None:
        config.seed.
      batch_size: images per forward pass.
      cca: False skips the CCA (and the CCA-dependent tables).
      decomposition: the CCA kernel's eigen/singular-value method, "linalg"
        (jnp.linalg; fastest on CPUs), "jacobi" (batched), "cholesky" (no
        decomposition, matrix products; fastest measured on GPUs) or "auto"
        (the platform's faster measured one); recorded in the sampling details;
        None: config.analysis.cca_decomposition.

    Returns:
      A summary dict (also written as analysis/summary.json).
    """
    workdir = Path(workdir)
    check_finished(workdir)
    config = ConfigDict(json.loads((workdir / "config.json").read_text()))
    recorded = config.get("analysis", ConfigDict())
    if reference is None:
        reference = recorded.get("reference", "")
    if full_depth is None:
        full_depth = recorded.get("full_depth", False)
    if seed is None:
        seed = config.get("seed", 0)
    if decomposition is None:
        decomposition = recorded.get("cca_decomposition", "auto")
    decomposition = resolve_decomposition(decomposition)
    out = workdir / "analysis"
    out.mkdir(exist_ok=True)
    target = config.target
    auc_rows = tables.read_csv(workdir / "AUC.csv")
    notes = []

    cca_rows, full_rows, sampling_info, full_taps = [], [], {}, ()
    timings = {}
    if cca:
        for fold in config.grid.folds:
            fold_result = cca_of_fold(
                workdir,
                config,
                fold,
                seed=seed,
                batch_size=batch_size,
                full_depth=full_depth,
                decomposition=decomposition,
            )
            cca_rows += fold_result["rows"]
            full_rows += fold_result["full_rows"]
            notes += fold_result["notes"]
            if fold_result["sampling"]:
                sampling_info[f"fold{fold}"] = fold_result["sampling"]
                timings[f"cca_fold{fold}_s"] = fold_result["sampling"]["seconds"]
            if "full_taps" in fold_result:
                full_taps = fold_result["full_taps"]
                timings[f"full_depth_fold{fold}_s"] = fold_result["full_seconds"]
        order = {pair: k for k, pair in enumerate(pairs.csv_row_order(target))}

        def paper_order(row):  # each pair's folds together, as the paper's file
            return order[row["model1"], row["model2"]], int(row["fold"][4:])

        cca_rows.sort(key=paper_order)
        full_rows.sort(key=paper_order)
        files.write_text(
            out / f"CCA_{target}.csv", tables.csv_text(tables.CCA_HEADER, cca_rows)
        )
        files.write_text(
            out / f"CCA_{target}_sampling.json",
            json.dumps(
                tables.jsonable(
                    {
                        "protocol": "svcca mean CCA, epsilon 1e-12",
                        "seed": seed,
                        "image_size": config.data.size,
                        "folds": sampling_info,
                    }
                ),
                indent=1,
            )
            + "\n",
        )
        if full_depth:
            header = ["model1", "model2", "fold", "stimuli", *full_taps]
            files.write_text(
                out / f"CCA_full_{target}.csv", tables.csv_text(header, full_rows)
            )

    sim_rows, sim_details, sim_notes = similarity_rows(workdir, config)
    notes += sim_notes
    files.write_text(
        out / "similarity.csv", tables.csv_text(tables.SIMILARITY_HEADER, sim_rows)
    )
    if sim_details:
        files.write_text(
            out / "similarity_details.csv",
            tables.csv_text(list(sim_details[0]), sim_details),
        )

    gain_points, gain_stats = {}, {}
    for source, name in tables.GAIN_FILES.items():
        chosen = [
            r
            for r in cca_rows
            if r["model2"] == source
            and r["model1"] == pairs.finetuned_name(target, source, False)
        ]
        files.write_text(out / name, tables.csv_text(tables.CCA_HEADER, chosen))
        gain_points[source] = similarity.gain_points(chosen, auc_rows, source)
        gain_stats[source] = similarity.gain_regression(gain_points[source])
    files.write_text(
        out / "gain_stats.csv",
        tables.csv_text(tables.GAIN_STATS_HEADER, tables.gain_stats_rows(gain_stats)),
    )
    files.write_text(
        out / "AUC_mean.csv",
        tables.csv_text(tables.AUC_MEAN_HEADER, tables.auc_mean_rows(auc_rows)),
    )

    figure_names = []
    network = models.abstract(config.model.name)
    label = network.display_name
    figures.auc_boxplot(auc_rows, out / "auc", label)
    figure_names.append("auc.png")
    if cca_rows:
        figures.cca_layers(
            [{**r, **_floats(r)} for r in cca_rows], target, out / "cca_layers", label
        )
        figure_names.append("cca_layers.png")
        figures.gain_scatter(gain_points, gain_stats, out / "cca_vs_auc_gain", label)
        figure_names.append("cca_vs_auc_gain.png")
    if sim_rows:
        figures.similarity_boxplot(sim_rows, out / "similarity", label)
        figure_names.append("similarity.png")
    networks, _ = networks_of_fold(workdir, config, config.grid.folds[0], seed)
    kernels = conv1_kernels(workdir, config, networks)
    if kernels:
        figures.conv1_filters(kernels, out / "conv1_filters", network=label)
        figure_names.append("conv1_filters.png")

    ref = tables.read_reference(reference, [target]) if reference else None
    details = {
        "protocol": config.protocol,
        "AUC": f"{config.eval.auc} (config.eval.auc; the paper's tables: "
        "sklearn binary or OvR weighted on the held-out fold, v1)",
        "image size": f"training {config.data.size} px, CCA "
        f"{inputs.cca_image_size(config)} px (config.analysis.image_size; "
        "CCA.py used 96 pcam-small, 224 breast, mammograms and thyroid, 112 "
        "otherwise)",
        "folds": ", ".join(f"fold{k}" for k in config.grid.folds),
        "CCA stimuli": "each fold's held-out "
        + ("val + test splits (v1)" if config.protocol == "v1" else "test split"),
        "CCA sampling": f"p = {sampling.PAPER_DATAPOINTS} datapoints, d = "
        f"{sampling.PAPER_CHANNELS} channels, {sampling.PAPER_REPETITIONS} "
        f"repetitions, seed {seed} (CCA_{target}_sampling.json)",
        "model": f"{label} (config.model.name={config.model.name!r}); the CCA "
        f"columns {', '.join(sampling.LAYER_NAMES)} are its taps "
        f"{', '.join(network.study_taps)}",
        "notes": notes,
    }
    text = report.render(
        workdir=str(workdir),
        target=target,
        details=details,
        auc_rows=auc_rows,
        cca_rows=cca_rows,
        similarity_rows=sim_rows,
        gain_stats=gain_stats,
        full_depth_rows=full_rows,
        full_depth_taps=full_taps,
        reference=ref,
        figures=figure_names,
    )
    files.write_text(out / "report.md", text + "\n")
    summary = {
        "target": target,
        "cca_rows": len(cca_rows),
        "similarity_rows": len(sim_rows),
        "gain_stats": gain_stats,
        "timings_s": timings,
        "notes": notes,
        "figures": figure_names,
    }
    files.write_text(
        out / "summary.json",
        json.dumps(tables.jsonable(summary), indent=2, default=str) + "\n",
    )
    return summary


def _floats(row: dict) -> dict:
    return {layer: similarity.cell_float(row[layer]) for layer in sampling.LAYER_NAMES}
