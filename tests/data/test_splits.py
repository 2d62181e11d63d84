"""The paper's fold procedure, fold checks, and the import of the paper's fold CSVs."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from jaxtransfer.data import sources, splits, synthetic

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
PAPER_FOLDS = REFERENCE / "paper_folds"
needs_reference = pytest.mark.skipif(
    not PAPER_FOLDS.is_dir(),
    reason=f"the paper's fold CSVs are not at {PAPER_FOLDS}: put the folder "
    "data/<target>/ of github.com/DovileDo/revisiting-transfer there as "
    "<target>/{train,val,test}_fold{1..5}.csv for each of the seven targets",
)

GROUPED = ["chest", "thyroid", "knee", "mammograms"]
STRATIFIED = ["isic", "breast", "pcam-small"]


def _synthetic_examples(target, root):
    synthetic.write_target(target, root)
    kwargs = {"sample_size": None} if target.startswith("pcam") else {}
    return sources.read_target(target, root, **kwargs)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("target", GROUPED + STRATIFIED)
def test_synthetic_folds_have_the_protocol_properties(tmp_path, target):
    examples = _synthetic_examples(target, tmp_path)
    folds = splits.make_target_folds(target, examples)
    assert [fold.number for fold in folds] == [1, 2, 3, 4, 5]
    everything = set(range(len(examples)))
    held_out = []
    for fold in folds:
        train, val, test = (set(part.tolist()) for part in fold.parts().values())
        assert train | val | test == everything
        assert not (train & val or train & test or val & test)
        assert val and test
        held_out.append(val | test)
        if target in GROUPED:
            group = [{examples[i].group for i in part} for part in (train, val, test)]
            assert not (
                group[0] & group[1] or group[0] & group[2] or group[1] & group[2]
            )
    assert sum(len(part) for part in held_out) == len(examples)
    assert set().union(*held_out) == everything
    labels = None if target in GROUPED else [e.label for e in examples]
    groups = [e.group for e in examples] if target in GROUPED else None
    splits.check_folds(folds, len(examples), labels, groups)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stratified_held_out_class_counts_within_one_of_a_fifth():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=203, p=[0.6, 0.3, 0.1])
    totals = Counter(labels.tolist())
    for fold in splits.make_folds(labels):
        counts = Counter(labels[fold.held_out].tolist())
        for label, total in totals.items():
            assert abs(counts[label] - total / 5) < 1
        held = Counter(labels[fold.held_out].tolist())
        val = Counter(labels[fold.val].tolist())
        for label, total in held.items():
            assert abs(val[label] - total / 5) < 1


def test_grouped_val_is_about_a_quarter_of_the_held_out_part():
    groups = [f"p{i // 2}" for i in range(400)]
    folds = splits.make_folds(np.zeros(400, int), groups)
    for fold in folds:
        assert len(fold.held_out) == 80
        assert len(fold.val) == 20 and len(fold.test) == 60


def test_folds_are_deterministic():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    groups = [f"g{i}" for i in rng.integers(0, 30, 100)]
    for group_arg in (None, groups):
        first = splits.make_folds(labels, group_arg)
        second = splits.make_folds(labels, group_arg)
        for a, b in zip(first, second, strict=True):
            for name in splits.SPLIT_NAMES:
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_v1_form_is_train_and_the_whole_held_out_part():
    labels = np.arange(60) % 2
    v2 = splits.make_folds(labels)
    v1 = splits.make_folds(labels, version="v1")
    for new, old in zip(v2, v1, strict=True):
        np.testing.assert_array_equal(new.train, old.train)
        np.testing.assert_array_equal(np.sort(old.val), new.held_out)
        assert len(old.test) == 0
    for converted, old in zip(splits.to_v1(v2), v1, strict=True):
        np.testing.assert_array_equal(converted.val, np.sort(old.val))


@pytest.mark.bad_input
def test_check_folds_catches_a_shared_group_and_a_broken_partition():
    groups = np.array([f"p{i // 2}" for i in range(40)])
    folds = splits.make_folds(np.zeros(40, int), groups)
    splits.check_folds(folds, 40, groups=groups)
    first = folds[0]
    # swap one example of a val patient into test: the patient is now in both
    leaked_val, leaked_test = first.val[1:], np.append(first.test, first.val[0])
    leaked = splits.Fold(1, first.train, leaked_val, leaked_test)
    with pytest.raises(splits.FoldCheckError, match="groups in both val and test"):
        splits.check_folds([leaked, *folds[1:]], 40, groups=groups)
    with pytest.raises(splits.FoldCheckError, match="partition"):
        splits.check_folds([folds[0], folds[0], *folds[2:]], 40)


@pytest.mark.bad_input
def test_check_folds_catches_unstratified_folds():
    labels = np.array([0] * 50 + [1] * 50)
    order = np.arange(100)
    folds = [
        splits.Fold(k + 1, np.setdiff1d(order, part), part[:4], part[4:])
        for k, part in enumerate(np.split(order, 5))
    ]
    with pytest.raises(splits.FoldCheckError, match="stratified"):
        splits.check_folds(folds, 100, labels=labels)


# ---------------------------------------------------------------------------
# The paper's fold CSVs

# The paper's fold files: rows per fold (train, val, test), folds 1..5.
PAPER_ROWS = {
    "breast": [(624, 31, 125)] * 5,
    "chest": [(4684, 293, 879)] + [(4685, 292, 879)] * 4,
    "isic": [(8012, 400, 1603)] * 5,
    "knee": [(4177, 261, 784)] * 2 + [(4178, 261, 783)] * 3,
    "mammograms": [(2854, 178, 536)] * 3 + [(2855, 178, 535)] * 2,
    "pcam-small": [(8000, 400, 1600)] * 5,
    "thyroid": [(384, 24, 72)] * 5,
}
# The paper's fold files: fold-1 class counts of train ; val ; test, in sorted class
# order.
PAPER_FOLD1_CLASSES = {
    "breast": [(456, 168), (23, 8), (91, 34)],
    "chest": [(1248, 3436), (90, 203), (245, 634)],
    "isic": [
        (261, 411, 880, 92, 891, 5364, 113),
        (13, 21, 44, 4, 44, 268, 6),
        (53, 82, 175, 19, 178, 1073, 23),
    ],
    "knee": [(465, 330, 3382), (28, 25, 208), (76, 63, 645)],
    "mammograms": [(1678, 1176), (105, 73), (328, 208)],
    "pcam-small": [(3979, 4021), (199, 201), (796, 804)],
    "thyroid": [(157, 227), (6, 18), (29, 43)],
}


@needs_reference
@pytest.mark.parametrize("target", sorted(PAPER_ROWS))
def test_paper_fold_rows_match_the_protocol_table(target):
    folds = splits.read_paper_fold_rows(PAPER_FOLDS / target)
    sizes = [tuple(len(fold[name]) for name in splits.SPLIT_NAMES) for fold in folds]
    assert sizes == PAPER_ROWS[target]
    classes = sources.CLASS_NAMES[target]
    fold1 = [
        Counter(row.class_name for row in folds[0][name])
        for name in ("train", "val", "test")
    ]
    assert [tuple(c[name] for name in classes) for c in fold1] == PAPER_FOLD1_CLASSES[
        target
    ]


@needs_reference
@pytest.mark.parametrize("target", sorted(PAPER_ROWS))
def test_paper_held_out_parts_partition_the_dataset(target, tmp_path):
    folds = splits.read_paper_fold_rows(PAPER_FOLDS / target)
    every = {row.key for row in folds[0]["train"] + folds[0]["val"] + folds[0]["test"]}
    held_out = [row.key for fold in folds for row in fold["val"] + fold["test"]]
    assert len(held_out) == len(set(held_out)) == len(every)
    assert set(held_out) == every
    for fold in folds:
        keys = [row.key for name in splits.SPLIT_NAMES for row in fold[name]]
        assert len(keys) == len(set(keys)) and set(keys) == every
        if target in GROUPED:
            pids = [{row.group for row in fold[name]} for name in splits.SPLIT_NAMES]
            assert not (pids[0] & pids[1] or pids[0] & pids[2] or pids[1] & pids[2])
        for row in fold["val"][:5]:
            remapped = splits.remap_paper_path(
                f"{splits.PAPER_PATH_PREFIX}{row.path}", tmp_path
            )
            assert remapped.is_relative_to(tmp_path)
            assert remapped.as_posix().endswith(row.path)
            assert ".." not in remapped.relative_to(tmp_path).parts


def _paper_order(target):
    """The paper's example order, recovered from the fold CSVs' index column."""
    rows = {}
    for fold in splits.read_paper_fold_rows(PAPER_FOLDS / target):
        for name in splits.SPLIT_NAMES:
            for row in fold[name]:
                rows[row.index] = row
    if target == "pcam-small":
        # The index is the position in the converter folder's listing, which held
        # 286452 PNGs: 10000 drawn by RandomState(22) give exactly these indices.
        order = sources.sample_listing(286452, 10_000, 22)
        assert set(order.tolist()) == set(rows)
        return [rows[int(i)] for i in order]
    assert sorted(rows) == list(range(len(rows)))
    return [rows[i] for i in range(len(rows))]


@needs_reference
@pytest.mark.parametrize("target", STRATIFIED)
def test_make_folds_reproduces_the_papers_stratified_folds(target):
    ordered = _paper_order(target)
    position = {row.path: i for i, row in enumerate(ordered)}
    classes = sources.CLASS_NAMES[target]
    folds = splits.make_folds([classes.index(row.class_name) for row in ordered])
    for fold, paper in zip(folds, splits.read_paper_fold_rows(PAPER_FOLDS / target)):
        for name in splits.SPLIT_NAMES:
            expected = sorted(position[row.path] for row in paper[name])
            assert sorted(getattr(fold, name).tolist()) == expected


@needs_reference
def test_read_paper_folds_onto_a_breast_download(tmp_path):
    rows = splits.read_paper_fold_rows(PAPER_FOLDS / "breast")[0]
    names = [row.path.split("/")[-1] for rows_ in rows.values() for row in rows_]
    counts = {
        kind: max(
            int(n.split("(")[1].split(")")[0]) for n in names if n.startswith(kind)
        )
        for kind in ("benign", "malignant", "normal")
    }
    synthetic.write_breast(tmp_path, counts, masks=True, image_size=4)
    examples = sources.read_breast(tmp_path)
    assert len(examples) == 780
    folds = splits.read_paper_folds(
        PAPER_FOLDS / "breast", examples, data_root=tmp_path
    )
    assert [(len(f.train), len(f.val), len(f.test)) for f in folds] == PAPER_ROWS[
        "breast"
    ]
    splits.check_folds(folds, len(examples), labels=[e.label for e in examples])
    first_val = rows["val"][0]
    assert examples[folds[0].val[0]].path == first_val.path
    v1 = splits.read_paper_folds(PAPER_FOLDS / "breast", examples, version="v1")
    assert [(len(f.train), len(f.val), len(f.test)) for f in v1] == [(624, 156, 0)] * 5

    (tmp_path / "breast/benign (7).png").unlink()
    with pytest.raises(sources.LayoutError, match=r"benign \(7\)\.png") as error:
        splits.read_paper_folds(
            PAPER_FOLDS / "breast",
            sources.read_breast(tmp_path),
            data_root=tmp_path,
        )
    assert str(tmp_path / "breast") in str(error.value)


def _write_paper_csvs(folder, examples, folds):
    """Fold CSVs in the paper's mammograms format: ,pid,path,class."""
    folder.mkdir(parents=True)
    for fold in folds:
        for name in splits.SPLIT_NAMES:
            with open(folder / f"{name}_fold{fold.number}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["", "pid", "path", "class"])
                for i in getattr(fold, name):
                    e = examples[i]
                    writer.writerow(
                        [
                            e.table_row,
                            e.group,
                            splits.PAPER_PATH_PREFIX + e.path,
                            e.class_name,
                        ]
                    )


def test_paper_fold_import_matches_shared_mammogram_images_by_row(tmp_path):
    data_root = tmp_path / "data"
    synthetic.write_mammograms(data_root)
    examples = sources.read_mammograms(data_root)
    assert len({e.path for e in examples}) < len(examples)  # images shared by rows
    folds = splits.make_target_folds("mammograms", examples)
    _write_paper_csvs(tmp_path / "folds", examples, folds)
    imported = splits.read_paper_folds(
        tmp_path / "folds", examples, data_root=data_root
    )
    for mine, theirs in zip(folds, imported, strict=True):
        for name in splits.SPLIT_NAMES:
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.bad_input
def test_paper_fold_import_rejects_a_label_mismatch(tmp_path):
    synthetic.write_breast(tmp_path / "data", image_size=4)
    examples = sources.read_breast(tmp_path / "data")
    folds = splits.make_target_folds("breast", examples)
    flipped = [
        sources.Example(
            e.path,
            "malignant" if e.class_name == "benign" else "benign",
            1 - e.label,
            paper_path=e.paper_path,
        )
        for e in examples
    ]
    folder = tmp_path / "folds"
    folder.mkdir()
    for fold in folds:
        for name in splits.SPLIT_NAMES:
            with open(folder / f"{name}_fold{fold.number}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["", "path", "class"])
                for i in getattr(fold, name):
                    e = flipped[i]
                    writer.writerow(
                        [i, splits.PAPER_PATH_PREFIX + e.path, e.class_name]
                    )
    with pytest.raises(sources.LayoutError, match="disagree"):
        splits.read_paper_folds(folder, examples)


@pytest.mark.bad_input
def test_remap_rejects_foreign_prefixes(tmp_path):
    assert splits.remap_paper_path("../../../data/thyroid/1_1.jpg", tmp_path) == (
        tmp_path / "thyroid" / "1_1.jpg"
    )
    with pytest.raises(ValueError, match="does not start with"):
        splits.remap_paper_path("/elsewhere/thyroid/1_1.jpg", tmp_path)
