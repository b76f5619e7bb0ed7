"""Comparing two segmentations by customer id, checked against a story whose truth is known:
customers in three far-apart groups, some of whom moved, left or arrived between two runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame

from segmentation.charts import migration_heatmap, migration_sankey
from segmentation.comparison import compare, write_comparison
from segmentation.errors import InputError
from segmentation.params import SegmentationParams
from segmentation.pipeline import run_segmentation
from segmentation.results import load_results, save_segment_names
from segmentation.sweep import run_sweep

SEED = 7
PER_GROUP = 300
# Spend, Frequency and Recency at the centre of each group: far apart on every one.
GROUPS = {"low": (80.0, 2, 200), "mid": (900.0, 12, 60), "high": (6000.0, 40, 7)}
MOVES = {
    ("low", "mid"): 40,
    ("mid", "high"): 25,
    ("high", "low"): 15,
    ("low", "high"): 10,
    ("mid", "low"): 5,
}
LEAVING = {"low": 12, "mid": 10, "high": 8}
ARRIVING = {"high": 20, "low": 15, "mid": 10}
FEATURES = ("Spend", "Frequency", "Recency")


@dataclass(frozen=True)
class Story:
    """Both customer tables with each customer's true group (the column `group`)."""

    before: pd.DataFrame
    after: pd.DataFrame


@dataclass(frozen=True)
class Runs:
    before: Path
    after: Path
    after_csv: Path


def features_of(groups: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Spend, Frequency and Recency of customers drawn close to their group's centre."""
    n = len(groups)
    centres = np.array([GROUPS[g] for g in groups])
    return pd.DataFrame(
        {
            "Spend": (centres[:, 0] * rng.uniform(0.9, 1.1, n)).round(2),
            "Frequency": centres[:, 1].astype(int) + rng.integers(0, 2, n),
            "Recency": centres[:, 2].astype(int) + rng.integers(0, 5, n),
        }
    )


def tell_story() -> Story:
    """900 customers; then 95 move between groups (MOVES), 30 leave, 45 arrive, and everyone's
    figures are drawn again from the group they are now in (so spend differs between runs)."""
    rng = np.random.default_rng(SEED)
    ids = [f"C{i:05d}" for i in range(1, 3 * PER_GROUP + 1)]
    groups = list(rng.permutation(np.repeat(list(GROUPS), PER_GROUP)))
    before = pd.DataFrame({"CustomerID": ids, "group": groups}).join(features_of(groups, rng))
    now = dict(zip(ids, groups, strict=True))
    untouched = {g: [c for c, group in now.items() if group == g] for g in GROUPS}
    for (source, target), n in MOVES.items():
        for customer in untouched[source][:n]:
            now[customer] = target
        del untouched[source][:n]
    for group, n in LEAVING.items():
        for customer in untouched[group][:n]:
            del now[customer]
        del untouched[group][:n]
    arrivals = [g for g, n in ARRIVING.items() for _ in range(n)]
    now |= {f"N{i:04d}": g for i, g in enumerate(arrivals, start=1)}
    after = pd.DataFrame({"CustomerID": list(now), "group": list(now.values())})
    after = after.sample(frac=1, random_state=SEED).reset_index(drop=True)
    return Story(before, after.join(features_of(list(after["group"]), rng)))


@pytest.fixture(scope="module")
def story() -> Story:
    return tell_story()


@pytest.fixture(scope="module")
def runs(spark, story, tmp_path_factory) -> Runs:
    folder = tmp_path_factory.mktemp("comparison")
    made = {}
    for name, table in (("before", story.before), ("after", story.after)):
        path = folder / f"{name}.csv"
        table.drop(columns="group").to_csv(path, index=False)
        run_segmentation(
            spark, str(path), SegmentationParams(k=3, seed=SEED, features=FEATURES), folder / name
        )
        made[name] = folder / name
    return Runs(made["before"], made["after"], folder / "after.csv")


@pytest.fixture(scope="module")
def comparison(spark, runs):
    return compare(spark, runs.before, runs.after)


@pytest.fixture(scope="module")
def written(comparison, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("written") / "before vs after"
    write_comparison(comparison, out)
    return out


def segment_of_group(folder: Path, table: pd.DataFrame) -> dict[str, str]:
    """Which segment number a run gave each group: the group's customers all share one."""
    customers = pd.read_csv(folder / "customers.csv", dtype=str, keep_default_na=False)
    seen = table.merge(customers[["CustomerID", "segment"]], on="CustomerID", validate="1:1")
    assert len(seen) == len(table)
    found = seen.groupby("group")["segment"].unique()
    assert all(len(segments) == 1 for segments in found), found
    mapping = {group: segments[0] for group, segments in found.items()}
    assert len(set(mapping.values())) == len(GROUPS)
    return mapping


def names_of(folder: Path) -> dict[str, str]:
    segments = load_results(folder).segments
    return {str(s): n for s, n in zip(segments["segment"], segments["name"], strict=True)}


def true_customers(story: Story, runs: Runs) -> pd.DataFrame:
    """Every customer with the segment each run should have given it, and its spend in each."""
    before = story.before.assign(
        segment=story.before["group"].map(segment_of_group(runs.before, story.before))
    )
    after = story.after.assign(
        segment=story.after["group"].map(segment_of_group(runs.after, story.after))
    )
    both = before.merge(after, on="CustomerID", how="outer", suffixes=("_before", "_after"))
    return pd.DataFrame(
        {
            "customer_id": both["CustomerID"],
            "before": both["segment_before"].fillna("new"),
            "after": both["segment_after"].fillna("gone"),
            "spend_before": both["Spend_before"].fillna(0.0),
            "spend_after": both["Spend_after"].fillna(0.0),
        }
    )


def test_every_cell_and_every_mover_match_the_story(written, story, runs):
    truth = true_customers(story, runs)
    expected = (
        truth.groupby(["before", "after"])
        .agg(
            customers=("customer_id", "size"),
            spend_before=("spend_before", "sum"),
            spend_after=("spend_after", "sum"),
        )
        .reset_index()
    )
    migration = pd.read_csv(
        written / "migration.csv", dtype={"from_segment": str, "to_segment": str}
    )
    assert list(migration.columns) == [
        "from_segment",
        "from_name",
        "to_segment",
        "to_name",
        "customers",
        "spend_before",
        "spend_after",
    ]
    cells = migration.set_index(["from_segment", "to_segment"])
    assert sorted(cells.index) == sorted(zip(expected["before"], expected["after"], strict=True))
    for row in expected.itertuples():
        cell = cells.loc[(row.before, row.after)]
        assert cell["customers"] == row.customers, (row.before, row.after)
        assert cell["spend_before"] == pytest.approx(row.spend_before, abs=0.01)
        assert cell["spend_after"] == pytest.approx(row.spend_after, abs=0.01)
    before_names, after_names = names_of(runs.before), names_of(runs.after)
    assert list(migration["from_name"]) == [
        before_names.get(s, "new") for s in migration["from_segment"]
    ]
    assert list(migration["to_name"]) == [
        after_names.get(s, "gone") for s in migration["to_segment"]
    ]
    # Sorted by segment number, before then after, with "new" and "gone" last.
    order = [
        tuple((not s.isdigit(), int(s) if s.isdigit() else 0) for s in pair)
        for pair in zip(migration["from_segment"], migration["to_segment"], strict=True)
    ]
    assert order == sorted(order) and migration["from_segment"].iat[-1] == "new"

    movers = pd.read_csv(written / "movers.csv", dtype=str, keep_default_na=False)
    assert list(movers.columns) == ["customer_id", "before", "after"]
    moved = truth[truth["before"] != truth["after"]]
    assert len(moved) == sum(MOVES.values()) + sum(LEAVING.values()) + sum(ARRIVING.values())
    assert sorted(movers.itertuples(index=False, name=None)) == sorted(
        moved[["customer_id", "before", "after"]].itertuples(index=False, name=None)
    )


def test_counts_and_the_summary_file(comparison, written):
    moved, left, arrived = sum(MOVES.values()), sum(LEAVING.values()), sum(ARRIVING.values())
    assert comparison.new_customers == arrived == 45
    assert comparison.lost_customers == left == 30
    assert comparison.moved_customers == moved == 95
    assert comparison.same_customers == 3 * PER_GROUP - moved - left
    summary = json.loads((written / "comparison.json").read_text())
    assert summary["before"] == "before" and summary["after"] == "after"
    assert Path(summary["before_folder"]).name == "before"
    assert (summary["new_customers"], summary["lost_customers"]) == (45, 30)
    assert (summary["same_customers"], summary["moved_customers"]) == (775, 95)
    assert summary["movements"] == comparison.movements()
    assert isinstance(comparison.movers, DataFrame)  # a table of millions is never collected


def test_movements_read_as_sentences(comparison, story, runs):
    truth = true_customers(story, runs)
    before = segment_of_group(runs.before, story.before)
    after = segment_of_group(runs.after, story.after)
    before_names, after_names = names_of(runs.before), names_of(runs.after)
    expected = []
    for (source, target), n in MOVES.items():  # largest first
        moved = truth[(truth["before"] == before[source]) & (truth["after"] == after[target])]
        assert len(moved) == n
        named = before_names[before[source]], after_names[after[target]]
        assert named[0] != named[1]  # otherwise the sentence names their numbers too
        expected.append(
            f"{n} {named[0]} are now {named[1]}, worth {moved['spend_before'].sum():,.2f} "
            "in spend last period"
        )
    # Most arrivals join the high group (20 of 45), most departures leave the low one (12 of 30).
    joined, left = after["high"], before["low"]
    expected.append(f"45 new customers arrived, most in {joined} · {after_names[joined]} (20)")
    expected.append(f"30 customers are gone, most from {left} · {before_names[left]} (12)")
    assert comparison.movements() == expected
    assert comparison.movements(top=2) == [*expected[:2], *expected[-2:]]


def test_a_cell_lists_its_customers(comparison, story, runs):
    before = segment_of_group(runs.before, story.before)
    after = segment_of_group(runs.after, story.after)
    cell = comparison.cell(before["low"], after["mid"]).toPandas()
    assert list(cell.columns) == [
        "customer_id",
        "before_segment",
        "before_name",
        "after_segment",
        "after_name",
        "spend_before",
        "spend_after",
    ]
    moved = story.before.merge(story.after, on="CustomerID", suffixes=("_before", "_after"))
    moved = moved[(moved["group_before"] == "low") & (moved["group_after"] == "mid")]
    assert sorted(cell["customer_id"]) == sorted(moved["CustomerID"]) and len(cell) == 40
    assert set(cell["before_name"]) == {names_of(runs.before)[before["low"]]}
    assert set(cell["after_name"]) == {names_of(runs.after)[after["mid"]]}
    spend = moved.set_index("CustomerID")
    for row in cell.itertuples():
        assert row.spend_before == pytest.approx(spend.loc[row.customer_id, "Spend_before"])
        assert row.spend_after == pytest.approx(spend.loc[row.customer_id, "Spend_after"])
    arrived = comparison.cell("new", after["high"]).toPandas()
    assert len(arrived) == 20 and set(arrived["before_name"]) == {"new"}
    assert arrived["spend_before"].isna().all()
    assert comparison.cell("new", "gone").count() == 0


def test_a_k_of_a_sweep_compares_like_a_single_run(spark, runs, comparison, tmp_path):
    sweep_out = tmp_path / "sweep_out"
    run_sweep(
        spark,
        str(runs.after_csv),
        SegmentationParams(k_range=(2, 3), seed=SEED, features=FEATURES),
        sweep_out,
    )
    from_sweep = compare(spark, runs.before, sweep_out / "k=3")
    assert from_sweep.after == "sweep_out (k=3)"
    pd.testing.assert_frame_equal(from_sweep.migration, comparison.migration)


def test_edited_names_are_the_ones_used(spark, runs, tmp_path):
    renamed = tmp_path / "renamed"
    shutil.copytree(runs.before, renamed)
    save_segment_names(renamed, {1: "VIP"})
    compared = compare(spark, renamed, runs.after)
    migration = compared.migration
    assert set(migration.loc[migration["from_segment"] == "1", "from_name"]) == {"VIP"}
    # Segment 1 spends most: the high group, 15 of whom moved to the low one.
    assert [s for s in compared.movements() if "VIP" in s][0].startswith("15 VIP are now ")
    assert set(compared.cell("1", "1").toPandas()["before_name"]) == {"VIP"}


def test_a_customer_twice_in_one_run_is_refused(spark, runs, tmp_path):
    doubled = tmp_path / "doubled"
    shutil.copytree(runs.after, doubled)
    customers = doubled / "customers.csv"
    lines = customers.read_text().splitlines(keepends=True)
    customers.write_text("".join([*lines, lines[5]]))
    repeated = lines[5].split(",")[0]
    with pytest.raises(InputError, match=f"Customer id '{repeated}' appears 2 times in 'doubled'"):
        compare(spark, runs.before, doubled)


def without_role(folder: Path, role: str, target: Path) -> Path:
    """A copy of a results folder whose manifest knows no column for `role`."""
    shutil.copytree(folder, target)
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["input"]["mapping"][role]
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_a_run_without_customer_ids_is_refused(spark, runs, tmp_path):
    anonymous = without_role(runs.before, "customer_id", tmp_path / "anonymous")
    with pytest.raises(InputError, match="'anonymous' has no customer id column; comparing"):
        compare(spark, anonymous, runs.after)


def test_a_run_without_spend_leaves_its_spend_empty(spark, runs, comparison, tmp_path):
    compared = compare(spark, without_role(runs.before, "spend", tmp_path / "no spend"), runs.after)
    migration = compared.migration
    assert migration["spend_before"].isna().all()
    pd.testing.assert_series_equal(migration["spend_after"], comparison.migration["spend_after"])
    assert not any("worth" in s for s in compared.movements())


def test_charts_show_every_segment_with_new_and_gone(comparison):
    migration = comparison.migration
    heatmap = migration_heatmap(migration).data[0]
    assert heatmap.z.shape == (4, 4)  # three segments and "new" by three segments and "gone"
    assert heatmap.y[0].startswith("1 · ") and heatmap.y[-1] == "New customers"
    assert heatmap.x[0].startswith("1 · ") and heatmap.x[-1] == "Gone"
    assert heatmap.text.sum() == 3 * PER_GROUP + sum(ARRIVING.values())
    sankey = migration_sankey(migration).data[0]
    assert len(sankey.node.label) == 8
    assert sankey.node.label[3] == "New customers" and sankey.node.label[-1] == "Gone"
    assert len(sankey.link.value) == len(migration)
    assert sum(sankey.link.value) == 3 * PER_GROUP + sum(ARRIVING.values())


def test_a_sankey_of_ten_segments_stays_readable():
    segments = [str(s) for s in range(1, 11)]
    migration = pd.DataFrame(
        [
            {
                "from_segment": a,
                "from_name": f"Before {a}",
                "to_segment": b,
                "to_name": f"After {b}",
                "customers": 10,
            }
            for a in [*segments, "new"]
            for b in [*segments, "gone"]
            if (a, b) != ("new", "gone")
        ]
    )
    figure = migration_sankey(migration)
    assert len(figure.data[0].node.label) == 22
    assert figure.layout.height >= 11 * 45  # room for eleven nodes on each side
    assert migration_heatmap(migration).data[0].z.shape == (11, 11)


def test_a_comparison_is_never_overwritten(comparison, written):
    with pytest.raises(FileExistsError):
        write_comparison(comparison, written)
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]
