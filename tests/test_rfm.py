"""Classic RFM beside KMeans: scores, the R×F grid, segment names in the same vocabulary and the
overlap of the two segmentations."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from segmentation.params import SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.profiles import SegmentProfile, name_segments
from segmentation.results import load_results
from segmentation.rfm import GRID, SEGMENTS, grid_segment
from segmentation.sweep import run_sweep
from segmentation.validation import QUINTILES
from tests.helpers import synthetic_csv

SCORES = ["r_score", "f_score", "m_score"]
CUT_ROLES = ["recency", "frequency", "spend"]
RANK_ERROR = 0.001  # the KLL sketch's is about 0.05%


def expected_scores(values: pd.DataFrame, roles: dict[str, str], cuts: dict) -> pd.DataFrame:
    """Scores by numpy: 1 + the number of cut points a value lies above; R reversed."""

    def above(role: str) -> np.ndarray:
        x = values[roles[role]].to_numpy(float)
        return (x[:, None] > np.array(cuts[role])[None, :]).sum(axis=1)

    r = 5 - above("recency")
    f = 1 + above("frequency")
    table = pd.DataFrame({"r_score": r, "f_score": f, "m_score": 1 + above("spend")})
    table["rfm_segment"] = [GRID[a][b - 1] for a, b in zip(r, f, strict=True)]
    return table


def check_rfm(out, customers: pd.DataFrame, known: pd.DataFrame) -> None:
    """customers.csv's scores and segments follow the rule from the manifest's cut points; the
    cut points are the quintiles of the `known` values (to the sketch's rank error); and
    rfm_overlap.csv counts the customers (missing values filled as the manifest says)."""
    results = load_results(out)
    manifest = results.manifest
    model = manifest.model.features
    roles = manifest.input.mapping
    cuts = manifest.rfm["cuts"]
    values = pd.DataFrame(
        {roles[r]: customers[roles[r]].fillna(model[roles[r]].fill) for r in CUT_ROLES}
    )
    expected = expected_scores(values, roles, cuts)
    for score in [*SCORES, "rfm_segment"]:
        assert (customers[score].to_numpy() == expected[score].to_numpy()).all(), score
    for role in CUT_ROLES:
        x = known[roles[role]].dropna().to_numpy(float)
        for share, cut in zip(QUINTILES, cuts[role], strict=True):
            # The share of known values below the cut and at most the cut bracket the quintile.
            assert (x < cut).mean() - RANK_ERROR <= share <= (x <= cut).mean() + RANK_ERROR
    # Equal values, equal scores.
    for role, score in zip(CUT_ROLES, SCORES, strict=True):
        assert (values.assign(s=customers[score]).groupby(roles[role])["s"].nunique() == 1).all()
    crosstab = customers.groupby(["segment", "rfm_segment"]).size().rename("customers")
    found = results.rfm.set_index(["segment", "rfm_segment"])["customers"]
    assert found.sort_index().equals(crosstab.sort_index())
    table = results.rfm_overlap()
    assert list(table.columns) == [s for s in SEGMENTS if s in set(customers["rfm_segment"])]
    assert table.to_numpy().sum() == len(customers)
    assert list(table.sum(axis=1)) == list(results.segments["size"])


def test_the_grid_gives_every_r_and_f_one_of_ten_segments():
    cells = {(r, f): grid_segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert set(cells.values()) == set(SEGMENTS) and len(SEGMENTS) == 10
    assert cells[5, 5] == cells[5, 4] == "Champions"
    assert cells[5, 1] == "New customers" and cells[4, 1] == "Promising"
    assert cells[3, 3] == "Need attention" and cells[3, 1] == "About to sleep"
    assert cells[1, 5] == cells[2, 5] == "Can't lose them"
    assert cells[1, 3] == "At risk" and cells[1, 1] == cells[2, 2] == "Hibernating"
    assert cells[4, 4] == cells[3, 5] == "Loyal" and cells[4, 2] == "Potential loyalists"


def profile(segment: int, spend: float, rfm: dict[str, int]) -> SegmentProfile:
    return SegmentProfile(
        segment=segment,
        size=sum(rfm.values()),
        share=0.1,
        stats={c: {"median": 1.0} for c in ("Recency", "Frequency", "Spend")},
        z={"Recency": 0.0, "Frequency": 0.0, "Spend": spend},
        scores={"r_score": 5, "f_score": 5, "m_score": 5},
        rfm=rfm,
    )


def test_segments_are_named_by_the_rfm_segment_most_of_their_customers_are_in():
    roles = {"recency": "Recency", "frequency": "Frequency", "spend": "Spend"}
    segments = [
        profile(1, 1.2, {"Champions": 8, "Loyal": 2}),
        profile(2, -0.5, {"New customers": 6, "Promising": 4}),
        profile(3, 0.4, {"Hibernating": 5, "At risk": 3, "About to sleep": 2}),
        profile(4, -0.9, {"Hibernating": 7, "About to sleep": 3}),
        profile(5, 0.9, {"Can't lose them": 4, "At risk": 3, "Loyal": 3}),
    ]
    name_segments(segments, roles)
    assert [s.name for s in segments] == [
        "Champions",
        "New customers",
        "Hibernating (high spend)",
        "Hibernating (low spend)",
        "Can't lose them",
    ]
    assert segments[0].reason.endswith("median RFM scores 5-5-5")


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    """600 synthetic customers with missing values, and a sweep k=2..3 of them."""
    folder = tmp_path_factory.mktemp("rfm")
    path = folder / "customers.csv"
    table, _ = synthetic_csv(path, n=600, segments=4, seed=5)
    single = run_segmentation(spark, str(path), SegmentationParams(k=4), folder / "one")
    sweep = run_sweep(spark, str(path), SegmentationParams(k_range=(2, 3)), folder / "sweep")
    return single, sweep, table


def test_every_customer_gets_scores_and_the_overlap_counts_them(run):
    single, _, table = run
    customers = pd.read_csv(single.out_dir / "customers.csv")
    assert customers["Spend"].isna().any()  # scored as the median it is filled with
    check_rfm(single.out_dir, customers, table)
    names = set(pd.read_csv(single.out_dir / "segments.csv")["name"])
    assert {name.split(" (")[0] for name in names} <= set(SEGMENTS)


def test_each_name_is_what_most_of_its_customers_are_and_says_how_many(run):
    single, _, _ = run
    customers = pd.read_csv(single.out_dir / "customers.csv")
    segments = pd.read_csv(single.out_dir / "segments.csv").set_index("segment")
    counts = pd.crosstab(customers["segment"], customers["rfm_segment"])
    assert segments["name"].is_unique
    assert (segments["rfm_name"] == segments["name"].str.split(" (", regex=False).str[0]).all()
    for number, row in segments.iterrows():
        assert (
            row["rfm_agreement"] == counts.loc[number, row["rfm_name"]] == counts.loc[number].max()
        )
        assert row["rfm_agreement_share"] == pytest.approx(row["rfm_agreement"] / row["size"])
        # The median scores (the scores of the median values) are medians of the scores.
        scores = customers.loc[customers["segment"] == number, SCORES]
        lower, upper = (scores.quantile(0.5, interpolation=i) for i in ("lower", "higher"))
        for score in SCORES:
            assert lower[score] <= row[f"{score}_median"] <= upper[score]


def test_a_sweep_scores_once_and_every_k_downloads_the_scores(run):
    _, sweep, table = run
    customers = pd.read_csv(sweep.out_dir / "customers.csv")
    assert [c for c in customers.columns if c in SCORES or c == "rfm_segment"] == [
        *SCORES,
        "rfm_segment",
    ]
    for k in (2, 3):
        results = load_results(sweep.out_dir / f"k={k}")
        target = io.BytesIO()
        results.write_customers(target)
        downloaded = pd.read_csv(io.BytesIO(target.getvalue()))
        assert list(downloaded.columns[-6:]) == ["segment", "segment_name", *SCORES, "rfm_segment"]
        check_rfm(results.out_dir, downloaded, table)


def test_without_recency_frequency_and_spend_there_are_no_scores(spark, tmp_path):
    path = tmp_path / "customers.csv"
    synthetic_csv(path, n=200, segments=2, seed=1)
    result = run_segmentation(
        spark, str(path), SegmentationParams(k=2, features=("Age", "Spend")), tmp_path / "o"
    )
    customers = pd.read_csv(result.out_dir / "customers.csv")
    assert "r_score" not in customers.columns and result.manifest.rfm is None
    assert load_results(result.out_dir).rfm_overlap() is None
