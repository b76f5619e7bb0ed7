"""A real public order log through the command line: CDNOW, 69,659 order lines of 23,570
customers (CD purchases, 1997-1998), as shipped inside the `lifetimes` package.

It has what every shop's log has and our generator smooths over: heavy-tailed spend and order
counts, and 80 free items (amount 0), which are purchases, not returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.results import load_results
from segmentation.rfm import SEGMENTS
from tests.helpers import cdnow_csv
from tests.test_cli import cli
from tests.test_rfm import check_rfm

pytestmark = pytest.mark.slow  # 69,659 order lines through the command line: minutes


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The log as a shop's CSV, and its order lines as pandas reads them."""
    path = tmp_path_factory.mktemp("cdnow") / "cdnow_orders.csv"
    return path, cdnow_csv(path)


def expected_customers(lines: pd.DataFrame) -> pd.DataFrame:
    """Recency, Frequency and Spend by an independent pandas computation: without order ids an
    order is a customer's day; the reference date is the day after the last order."""
    day = pd.to_datetime(lines["date"], format="%Y%m%d")
    reference = day.max() + pd.Timedelta(days=1)
    grouped = lines.assign(day=day).groupby("customer_id")
    return pd.DataFrame(
        {
            "Recency": (reference - grouped["day"].max()).dt.days,
            "Frequency": grouped["day"].nunique(),
            "Spend": grouped["dollar_value"].sum().round(2),
        }
    )


@pytest.fixture(scope="module")
def cdnow_run(cdnow, tmp_path_factory):
    """The command line's run of the log with its defaults (k = 4) and what it printed."""
    out = tmp_path_factory.mktemp("cdnow-run") / "res"
    done = cli("run", str(cdnow[0]), "--k", "4", "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done


def test_every_customer_of_a_real_log_has_the_figures_pandas_computes(cdnow, cdnow_run):
    _, lines = cdnow
    out, done = cdnow_run
    assert len(lines) == 69_659 and (lines["dollar_value"] == 0).sum() == 80

    origin = json.loads((out / "manifest.json").read_text())["transactions"]
    # No line of this log is a return: a free item is a purchase with no spend.
    assert origin["return_lines"] == 0
    assert origin["returns_only_customers"] == 0
    assert "returned" not in done.stdout
    assert origin["customers"] == lines["customer_id"].nunique() == 23_570
    # Its whales are ordinary: the biggest spender holds 0.56% of the spend, 1.6 times the next.
    spend = lines.groupby("customer_id")["dollar_value"].sum().nlargest(2)
    assert spend.iloc[0] / lines["dollar_value"].sum() < 0.006 and spend.iloc[0] > 13_990
    assert origin["dominant_id"] is None and origin["missing_ids"] == {}
    found = pd.read_csv(out / "customers.csv", dtype={"CustomerID": str}).set_index("CustomerID")
    expected = expected_customers(lines)
    assert sorted(found.index) == sorted(expected.index)
    found = found.loc[expected.index]
    for column in ("Recency", "Frequency"):
        wrong = found[column] != expected[column]
        assert not wrong.any(), pd.concat(
            [found.loc[wrong, column], expected[wrong][column]], axis=1
        )
    assert (found["Spend"] - expected["Spend"]).abs().max() < 0.005


def test_profiles_describe_the_members_real_values(cdnow_run):
    out, _ = cdnow_run
    customers = pd.read_csv(out / "customers.csv")
    profiles = pd.read_csv(out / "segments.csv").set_index("segment")
    for feature in ("Spend", "Frequency"):
        top = customers.loc[customers["segment"] == 1, feature]
        assert profiles.loc[1, f"{feature}_max"] == pytest.approx(top.max(), abs=0.005)
        assert profiles.loc[1, f"{feature}_min"] == pytest.approx(top.min(), abs=0.005)
        assert profiles.loc[1, f"{feature}_mean"] == pytest.approx(top.mean(), rel=1e-9)
    # The best customers are in the top segment, with their real figures.
    assert profiles.loc[1, "Spend_max"] == pytest.approx(customers["Spend"].max(), abs=0.005)


def test_skewed_spend_and_orders_are_logged_not_capped_and_said_so(cdnow_run):
    out, done = cdnow_run
    manifest = json.loads((out / "manifest.json").read_text())
    model = manifest["model"]["features"]
    assert manifest["repairs"]["log_transformed"] == ["Frequency", "Spend"]
    assert model["Spend"]["fences"] is None and model["Frequency"]["fences"] is None
    assert model["Recency"]["fences"] is not None and model["Recency"]["transform"] == "none"
    assert model["Spend"]["transform"] == "log" and model["Frequency"]["transform"] == "log"
    assert (
        "note: The model sees 'Spend' as log(1 + x) (chosen automatically: skewness 17.7 above 1)"
        in done.stdout
    )


def test_what_the_model_saw_is_shown_apart(cdnow_run):
    out, _ = cdnow_run
    results = load_results(out)
    model = json.loads((out / "manifest.json").read_text())["model"]["features"]["Spend"]
    customers = pd.read_csv(out / "customers.csv")
    seen = results.model_table().set_index("segment")
    assert list(seen.columns) == ["name", *[f"{f} z" for f in results.features]]
    # Each centre is its members' mean of standardized log(1 + spend) (shown to 2 places).
    z = (np.log1p(customers["Spend"]) - model["mean"]) / model["std"]
    assert seen["Spend z"].to_numpy() == pytest.approx(
        z.groupby(customers["segment"]).mean().loc[seen.index].to_numpy(), abs=0.005
    )


def test_every_customer_has_rfm_scores_and_segments_speak_the_same_language(cdnow_run):
    out, done = cdnow_run
    customers = pd.read_csv(out / "customers.csv")
    check_rfm(out, customers, customers)
    # Half of the shop's customers bought on one day only: all of them get F = 1.
    assert (customers.loc[customers["Frequency"] == 1, "f_score"] == 1).all()
    assert (customers["Frequency"] == 1).mean() > 0.45
    segments = pd.read_csv(out / "segments.csv")
    names = segments["name"]
    assert {name.split(" (")[0] for name in names} <= set(SEGMENTS)
    assert names[0] == "Champions"  # the top-spending segment
    # Each name holds for as many of its customers as any RFM segment could: 54% of them in all
    # (with the converged fit; 12,782 when the fit stopped at 40 iterations).
    overlap = pd.crosstab(customers["segment"], customers["rfm_segment"])
    assert list(segments["rfm_agreement"]) == list(overlap.max(axis=1))
    assert segments["rfm_agreement"].sum() == 12_715
    assert "Champions" in done.stdout


def test_a_sweep_of_a_real_log_suggests_a_segmentation_not_a_split(cdnow, tmp_path):
    out = tmp_path / "sweep"
    done = cli("run", str(cdnow[0]), "--k-range", "2-10", "--out", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["opinions"]["silhouette"] == 2  # the split in two scores best
    assert manifest["suggested_k"] == manifest["opinions"]["elbow"] == 4
    assert manifest["suggestion"].startswith("k=4 is the elbow of the sum of squares")
