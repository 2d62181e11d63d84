"""Where the tests find the paper's result CSVs, and the numbers they must give.

The CSVs are read from the shared reference checkout beside the repository at test
time (never copied into the repo); tests that need them skip when it is absent.
"""

from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
PAPER_RESULTS = REFERENCE / "paper_results"
needs_paper_results = pytest.mark.skipif(
    not PAPER_RESULTS.is_dir(),
    reason=f"the paper's result tables are not at {PAPER_RESULTS}: put AUC.csv, "
    "AUC_mean.csv, CCA_<target>.csv, similarity.csv, simVSaucImNet.csv and "
    "simVSaucRadNet.csv from github.com/DovileDo/revisiting-transfer there",
)
# The paper's CCA vs AUC gain (docs/protocol.md#cca-vs-auc-gain): OLS slope / Pearson r
# per layer conv1..block4, pooled over the paper's 7 targets x 5 folds.
PAPER_GAIN = {
    "ImageNet": [(-1.15, -0.16), (-0.15, -0.03), (-0.22, -0.07), (-0.21, -0.10),
                 (-0.24, -0.13)],
    "RadImageNet": [(-0.44, -0.15), (-1.93, -0.45), (-1.64, -0.43), (-3.00, -0.56),
                    (-2.46, -0.47)],
}  # fmt: skip
