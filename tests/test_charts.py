"""Charts: built from hand-made result tables and checked as figures, without a browser."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from segmentation import charts

FEATURES = ["Age", "Spend", "Recency", "Frequency"]
NAMES = ["Champions", "At risk", "Loyal", "Loyal 2"]
ROLES = {"recency": "Recency", "frequency": "Frequency", "spend": "Spend", "age": "Age"}
LABELS = ["1 · Champions", "2 · At risk", "3 · Loyal", "4 · Loyal 2"]
# Centroid z-scores per segment, in FEATURES order.
Z = np.array(
    [
        [0.35, 1.80, -1.10, 1.55],
        [0.90, -0.40, 1.60, -1.20],
        [-0.70, 0.25, -0.30, 0.45],
        [-0.55, -1.65, -0.20, -0.80],
    ]
)
MEANS = np.array(
    [
        [48.0, 2150.0, 12.0, 15.0],
        [55.0, 640.0, 80.0, 3.0],
        [33.0, 1100.0, 30.0, 9.0],
        [35.0, 300.0, 35.0, 5.0],
    ]
)


@pytest.fixture
def segments() -> pd.DataFrame:
    sizes = np.array([120, 260, 380, 240])
    table = pd.DataFrame(
        {
            "segment": [1, 2, 3, 4],
            "name": NAMES,
            "reason": ["high spend, recent", "long since last order", "steady", "low spend"],
            "size": sizes,
            "share": sizes / sizes.sum(),
        }
    )
    for index, feature in enumerate(FEATURES):
        table[f"{feature}_mean"] = MEANS[:, index]
        table[f"{feature}_median"] = MEANS[:, index] * 0.95
        table[f"{feature}_min"] = MEANS[:, index] * 0.5
        table[f"{feature}_max"] = MEANS[:, index] * 1.8
        table[f"{feature}_z"] = Z[:, index]
    return table


@pytest.fixture
def sample() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    parts = []
    for number, name in enumerate(NAMES, start=1):
        rows = 25
        part = pd.DataFrame(
            {
                "CustomerID": [f"C{number}{i:03d}" for i in range(rows)],
                "segment": number,
                "segment_name": name,
                "Category": rng.choice(["Electronics", "Fashion", "Home"], rows),
                "Region": rng.choice(["North", "South", "East", "West"], rows),
            }
        )
        for index, feature in enumerate(FEATURES):
            part[feature] = rng.normal(MEANS[number - 1, index], 3.0, rows)
        for component in ("pc1", "pc2", "pc3"):
            part[component] = rng.normal(number, 0.4, rows)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def mix() -> pd.DataFrame:
    rows = [
        (1, "Region", "North", 50),
        (1, "Region", "South", 30),
        (1, "Region", "East", 20),
        (2, "Region", "North", 10),
        (2, "Region", "West", 250),
        (3, "Region", "South", 190),
        (3, "Region", "East", 190),
        (4, "Region", "West", 240),
        (1, "Category", "Electronics", 120),
        (2, "Category", "Fashion", 260),
    ]
    return pd.DataFrame(rows, columns=["segment", "column", "value", "count"])


@pytest.fixture
def sweep() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "k": [2, 3, 4, 5, 6],
            "within_ss": [900.0, 610.0, 380.0, 350.0, 330.0],
            "silhouette": [0.41, 0.47, 0.55, np.nan, 0.38],
            "calinski_harabasz": [310.0, 360.0, 420.0, 390.0, 350.0],
            "davies_bouldin": [1.10, 0.95, 0.70, 0.85, 0.99],
        }
    )


@pytest.fixture
def figures(segments, sample, mix, sweep) -> dict[str, go.Figure]:
    return {
        "sizes": charts.segment_sizes(segments),
        "heatmap": charts.profile_heatmap(segments, FEATURES),
        "radar": charts.radar(segments, FEATURES),
        "box": charts.feature_distributions(sample, FEATURES),
        "violin": charts.feature_distributions(sample, FEATURES, kind="violin"),
        "pca": charts.pca_scatter(sample, hover=["CustomerID"]),
        "rfm": charts.rfm_scatter_3d(sample, ROLES),
        "splom": charts.scatter_matrix(sample, FEATURES),
        "mix": charts.categorical_mix(mix, segments, "Region"),
        "sweep": charts.sweep_metrics(sweep, suggested_k=4),
    }


def colours_by_label(fig: go.Figure) -> dict[str, str]:
    """Segment label -> colour as drawn, whether one trace per segment or one coloured bar trace."""
    found: dict[str, str] = {}
    for trace in fig.data:
        if isinstance(trace.marker.color, tuple | list):
            found.update(zip(trace.x, trace.marker.color, strict=True))
        elif trace.name in LABELS:
            found[trace.name] = trace.marker.color
            line = getattr(trace, "line", None)
            if line is not None and line.color is not None:
                assert line.color == trace.marker.color
    return found


def test_segment_label_reads_number_then_name():
    assert charts.segment_label(1, "Champions") == "1 · Champions"
    assert charts.segment_label(np.int64(4), "Loyal 2") == "4 · Loyal 2"
    assert charts.segment_label(3, "") == "3 · Segment 3"
    assert charts.segment_label(5, float("nan")) == "5 · Segment 5"


def test_segment_colours_are_distinct_and_cycle_past_the_palette():
    palette_size = len(charts.SEGMENT_PALETTE)
    assert len({charts.segment_color(n) for n in range(1, palette_size + 1)}) == palette_size
    assert charts.segment_color(1 + palette_size) == charts.segment_color(1)


def test_a_segment_has_the_same_colour_on_every_chart(segments, figures):
    expected = {label: charts.segment_color(n) for n, label in enumerate(LABELS, 1)}
    for key in ("sizes", "radar", "box", "violin", "pca", "rfm", "splom"):
        assert colours_by_label(figures[key]) == expected, key


def test_segment_sizes_bars_in_segment_order_with_share_labels(segments):
    fig = charts.segment_sizes(segments.sample(frac=1, random_state=3))
    (bar,) = fig.data
    assert list(bar.x) == LABELS
    assert list(bar.y) == [120, 260, 380, 240]
    assert list(bar.text) == ["12.0%", "26.0%", "38.0%", "24.0%"]
    assert fig.layout.yaxis.title.text == "Customers"


def test_heatmap_shows_the_input_z_scores_with_the_real_mean_on_hover(segments):
    fig = charts.profile_heatmap(segments, FEATURES)
    (heatmap,) = fig.data
    assert np.allclose(np.asarray(heatmap.z, dtype=float), Z)
    assert list(heatmap.y) == LABELS
    assert list(heatmap.x) == FEATURES
    assert heatmap.zmid == 0
    assert heatmap.colorbar.title.text == "Centroid (z-score)"
    assert "Average Spend: 2,150" in heatmap.text[0][1]
    assert "%{text}" in heatmap.hovertemplate


def test_radar_has_one_closed_outline_per_segment_and_the_average(segments):
    fig = charts.radar(segments, FEATURES)
    assert len(fig.data) == 1 + len(LABELS)
    assert fig.data[0].name == "Average customer"
    champions = fig.data[1]
    assert champions.name == "1 · Champions"
    assert list(champions.theta) == [*FEATURES, FEATURES[0]]
    assert np.allclose(champions.r, [*Z[0], Z[0][0]])
    # Said above the chart, not on the radial axis where it ran into the ticks.
    assert fig.layout.polar.radialaxis.title.text is None
    assert fig.layout.title.subtitle.text.startswith("Centroid (z-score)")


@pytest.mark.parametrize("kind, trace_type", [("box", "box"), ("violin", "violin")])
def test_feature_distributions_one_trace_per_feature_and_segment(sample, kind, trace_type):
    fig = charts.feature_distributions(sample, FEATURES, kind=kind)
    assert len(fig.data) == len(FEATURES) * len(LABELS)
    assert {trace.type for trace in fig.data} == {trace_type}
    # One legend entry per segment, not one per subplot.
    assert [trace.name for trace in fig.data if trace.showlegend] == LABELS
    assert [a.text for a in fig.layout.annotations] == FEATURES


def test_feature_distributions_rejects_an_unknown_kind(sample):
    with pytest.raises(ValueError, match="'box' or 'violin'"):
        charts.feature_distributions(sample, FEATURES, kind="histogram")


def test_pca_scatter_one_trace_per_segment_with_customer_ids(sample):
    fig = charts.pca_scatter(sample, hover=["CustomerID"])
    assert [trace.name for trace in fig.data] == LABELS
    assert len(fig.data[0].x) == 25
    assert fig.data[0].customdata[0][0] == "C1000"
    assert fig.layout.xaxis.title.text == "Principal component 1"


def test_rfm_scatter_uses_the_role_columns(sample):
    fig = charts.rfm_scatter_3d(sample, ROLES)
    assert [trace.name for trace in fig.data] == LABELS
    champions = sample[sample["segment"] == 1]
    assert np.allclose(fig.data[0].x, champions["Recency"])
    assert np.allclose(fig.data[0].z, champions["Spend"])
    scene = fig.layout.scene
    assert [scene.xaxis.title.text, scene.yaxis.title.text, scene.zaxis.title.text] == [
        "Recency",
        "Frequency",
        "Spend",
    ]


def test_rfm_scatter_names_the_analysts_own_column():
    sample = pd.DataFrame(
        {
            "segment": [1, 2],
            "segment_name": ["A", "B"],
            "days_since_order": [3.0, 40.0],
            "orders": [9.0, 2.0],
            "revenue": [500.0, 80.0],
        }
    )
    roles = {"recency": "days_since_order", "frequency": "orders", "spend": "revenue"}
    fig = charts.rfm_scatter_3d(sample, roles)
    assert fig.layout.scene.xaxis.title.text == "Recency (days_since_order)"


def test_rfm_scatter_is_none_without_a_recency_role(sample):
    roles = {key: value for key, value in ROLES.items() if key != "recency"}
    assert charts.rfm_scatter_3d(sample, roles) is None
    assert charts.missing_rfm_roles(sample, roles) == ["recency"]


def test_rfm_scatter_is_none_when_the_role_column_is_not_in_the_sample(sample):
    assert charts.rfm_scatter_3d(sample.drop(columns="Spend"), ROLES) is None
    assert charts.missing_rfm_roles(sample.drop(columns="Spend"), ROLES) == ["spend"]


def test_scatter_matrix_one_splom_per_segment_over_all_features(sample):
    fig = charts.scatter_matrix(sample, FEATURES)
    assert [trace.type for trace in fig.data] == ["splom"] * len(LABELS)
    assert [d.label for d in fig.data[0].dimensions] == FEATURES
    with pytest.raises(ValueError, match="at least two features"):
        charts.scatter_matrix(sample, ["Age"])


def test_categorical_mix_shares_of_each_segment_sum_to_100(mix, segments):
    fig = charts.categorical_mix(mix, segments, "Region")
    # Values ordered by overall count, largest first: West 490, South 220, East 210, North 60.
    assert [trace.name for trace in fig.data] == ["West", "South", "East", "North"]
    assert fig.layout.barmode == "stack"
    assert fig.layout.legend.title.text == "Region"
    for index, label in enumerate(LABELS):
        assert list(fig.data[0].y)[index] == label
        total = sum(trace.x[index] for trace in fig.data)
        assert total == pytest.approx(100.0)
    north = dict(zip(fig.data[3].y, fig.data[3].x, strict=True))
    assert north["1 · Champions"] == pytest.approx(50.0)
    assert north["2 · At risk"] == pytest.approx(10 / 260 * 100)


def test_categorical_mix_sums_rare_values_into_other(segments):
    values = [f"City {i}" for i in range(12)]
    mix = pd.DataFrame(
        {"segment": 1, "column": "City", "value": values, "count": list(range(12, 0, -1))}
    )
    fig = charts.categorical_mix(mix, segments, "City", top=5)
    names = [trace.name for trace in fig.data]
    assert names == ["City 0", "City 1", "City 2", "City 3", "Other (8 values)"]
    assert fig.data[-1].marker.color == charts.OTHER_COLOR
    assert sum(trace.x[0] for trace in fig.data) == pytest.approx(100.0)


def test_categorical_mix_of_an_unknown_column_raises(mix, segments):
    with pytest.raises(ValueError, match="no values of 'Channel'"):
        charts.categorical_mix(mix, segments, "Channel")


def test_sweep_marks_the_suggested_k_on_all_four_metrics(sweep):
    fig = charts.sweep_metrics(sweep.sample(frac=1, random_state=1), suggested_k=4)
    assert len(fig.data) == 4
    assert list(fig.data[0].x) == [2, 3, 4, 5, 6]
    lines = [shape for shape in fig.layout.shapes if shape.type == "line"]
    assert len(lines) == 4
    assert all(shape.x0 == shape.x1 == 4 for shape in lines)
    assert {shape.xref for shape in lines} == {"x", "x2", "x3", "x4"}
    assert lines[0].line.color not in charts.SEGMENT_PALETTE
    assert any("k = 4" in annotation.text for annotation in fig.layout.annotations)
    assert np.isnan(fig.data[1].y[3])


def test_titles_speak_the_analysts_language(figures):
    for key, fig in figures.items():
        assert fig.layout.title.text, key
        layout = json.dumps(fig.to_plotly_json()["layout"].get("annotations", []))
        layout += fig.layout.title.text
        assert "_z" not in layout and "within_ss" not in layout, key
    assert figures["sweep"].layout.xaxis.title.text == "Number of segments (k)"


def test_every_figure_serialises_with_the_shared_template(figures):
    for key, fig in figures.items():
        payload = json.loads(fig.to_json())
        assert payload["data"], key
        assert fig.layout.height >= 300, key
    assert {fig.layout.template.layout.paper_bgcolor for fig in figures.values()} == {"white"}


def test_rfm_overlap_counts_and_colours_each_segment_by_its_share():
    overlap = pd.DataFrame(
        [[90, 10, 0], [0, 30, 270]],
        index=["1 · Champions", "2 · Hibernating (low spend)"],
        columns=["Champions", "Loyal", "Hibernating"],
    )
    fig = charts.rfm_overlap(overlap)
    (heatmap,) = fig.data
    assert list(heatmap.y) == list(overlap.index) and list(heatmap.x) == list(overlap.columns)
    assert np.array(heatmap.text).tolist() == [[90, 10, 0], [0, 30, 270]]
    assert np.array(heatmap.z).tolist() == [[90.0, 10.0, 0.0], [0.0, 10.0, 90.0]]
    assert fig.layout.yaxis.autorange == "reversed"  # segment 1 on top
    with pytest.raises(ValueError, match="no segments to compare"):
        charts.rfm_overlap(overlap.iloc[0:0])


@pytest.mark.parametrize(
    "draw",
    [
        lambda s, p, m, w: charts.segment_sizes(s.iloc[0:0]),
        lambda s, p, m, w: charts.profile_heatmap(s.iloc[0:0], FEATURES),
        lambda s, p, m, w: charts.profile_heatmap(s, []),
        lambda s, p, m, w: charts.radar(s.iloc[0:0], FEATURES),
        lambda s, p, m, w: charts.feature_distributions(p.iloc[0:0], FEATURES),
        lambda s, p, m, w: charts.pca_scatter(p.iloc[0:0]),
        lambda s, p, m, w: charts.rfm_scatter_3d(p.iloc[0:0], ROLES),
        lambda s, p, m, w: charts.scatter_matrix(p.iloc[0:0], FEATURES),
        lambda s, p, m, w: charts.categorical_mix(m.iloc[0:0], s, "Region"),
        lambda s, p, m, w: charts.categorical_mix(m, s.iloc[0:0], "Region"),
        lambda s, p, m, w: charts.sweep_metrics(w.iloc[0:0], suggested_k=3),
    ],
    ids=[
        "sizes",
        "heatmap",
        "heatmap-no-features",
        "radar",
        "distributions",
        "pca",
        "rfm",
        "splom",
        "mix",
        "mix-no-segments",
        "sweep",
    ],
)
def test_empty_inputs_raise_a_clear_value_error(draw, segments, sample, mix, sweep):
    with pytest.raises(ValueError, match=r"^(There are no|No )"):
        draw(segments, sample, mix, sweep)


def test_a_missing_column_is_named_in_the_error(segments):
    with pytest.raises(ValueError, match="'Spend_z'"):
        charts.profile_heatmap(segments.drop(columns="Spend_z"), FEATURES)


def test_charts_never_import_streamlit():
    tree = ast.parse(Path(charts.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert "streamlit" not in imported


def test_segment_splits_links_each_k_to_the_next_in_segment_colours():
    splits = pd.DataFrame(
        {
            "k": [2, 2, 2, 3, 3, 3],
            "source": [1, 2, 2, 1, 2, 3],
            "target": [1, 2, 3, 1, 2, 3],
            "count": [40, 35, 25, 40, 35, 25],
        }
    )
    names = {2: {1: "Champions", 2: "Others"}, 3: {1: "Champions", 2: "Loyal", 3: "New"}}
    fig = charts.segment_splits(splits, names)
    sankey = fig.data[0]
    assert list(sankey.link.value) == [40, 35, 25, 40, 35, 25]
    assert "2 · Loyal" in sankey.node.label
    assert len(sankey.node.label) == 2 + 3 + 3
    first = list(sankey.node.label).index("1 · Champions")
    assert sankey.node.color[first] == charts.segment_color(1)
    # Each column says its k above it, so a node's label can be short.
    assert [a.text for a in fig.layout.annotations] == [
        "<b>k = 2</b>",
        "<b>k = 3</b>",
        "<b>k = 4</b>",
    ]
    fig.to_json()
    with pytest.raises(ValueError):
        charts.segment_splits(splits.iloc[0:0], names)


def sweep_splits(ks: range) -> pd.DataFrame:
    """Splits of a sweep over `ks`: from each k to the next, segment k splits in two."""
    rows = [(k, s, t, 10) for k in ks for s in range(1, k + 1) for t in {s, s + (s == k)}]
    return pd.DataFrame(rows, columns=["k", "source", "target", "count"])


@pytest.mark.parametrize(
    "around, shown", [(5, [4, 5, 6]), (2, [2, 3, 4]), (10, [8, 9, 10]), (9, [8, 9, 10])]
)
def test_segment_splits_show_a_window_around_the_k_on_screen(around, shown):
    names = {
        k: {s: "Potential loyalists (high spend)" for s in range(1, k + 1)} for k in range(2, 11)
    }
    fig = charts.segment_splits(sweep_splits(range(2, 10)), names, around=around)
    assert [a.text for a in fig.layout.annotations] == [f"<b>k = {k}</b>" for k in shown]
    sankey = fig.data[0]
    assert len(sankey.node.label) == sum(shown)
    # Names are cut to fit beside the nodes; the hover says which k a node belongs to.
    assert max(len(label) for label in sankey.node.label) <= len("10 · ") + charts.SHORT_NAME
    assert sankey.node.label[0] == "1 · Potential loyalis…"
    assert sankey.node.customdata[0] == f"k={shown[0]}"
    assert fig.layout.height >= 120 + 55 * shown[-1]


def test_log_axes_for_logged_features_on_distributions_pairs_and_3d(sample):
    logged = ["Spend"]  # Spend is the second feature and the 3-D chart's z axis
    box = charts.feature_distributions(sample, FEATURES, logged=logged)
    assert box.layout.yaxis2.type == "log"
    assert [box.layout.yaxis.type, box.layout.yaxis3.type, box.layout.yaxis4.type] == ["linear"] * 3
    assert [a.text for a in box.layout.annotations][:2] == ["Age", "Spend (log)"]
    assert {"100", "1k", "10k"} <= set(box.layout.yaxis2.ticktext)
    pairs = charts.scatter_matrix(sample, FEATURES, logged=logged)
    assert (pairs.layout.xaxis2.type, pairs.layout.yaxis2.type) == ("log", "log")
    assert (pairs.layout.xaxis.type, pairs.layout.yaxis3.type) == ("linear", "linear")
    assert pairs.data[0].dimensions[1].label == "Spend (log)"
    space = charts.rfm_scatter_3d(sample, ROLES, logged=logged)
    assert space.layout.scene.zaxis.type == "log"
    assert space.layout.scene.xaxis.type == "linear"
    assert space.layout.scene.zaxis.title.text == "Spend (log)"


def test_a_heavy_tailed_feature_goes_log_and_a_flat_ranged_one_stays_linear():
    rng = np.random.default_rng(3)
    spend = pd.Series(rng.lognormal(5, 1.5, 2000))  # spans four orders of magnitude
    age = pd.Series(rng.normal(45, 12, 2000).clip(18, 90))
    assert charts.axis_scale(spend).log
    assert not charts.axis_scale(age).log
    assert not charts.axis_scale(age, logged=False).log
    # Logged by the model: log even when it spans little.
    assert charts.axis_scale(pd.Series([1.0, 2, 2, 3, 5, 8]), logged=True).log


def test_values_at_or_below_zero_sit_on_a_labelled_floor_of_a_log_axis():
    orders = pd.Series([0.0] * 5 + [1.0] * 60 + [2.0] * 20 + [5.0] * 10 + [40.0] * 4 + [300.0])
    scale = charts.axis_scale(orders, logged=True)
    assert scale.log and scale.floor == 0.5
    assert scale.ticktext[:4] == ("≤ 0", "1", "10", "100")
    assert list(scale.positions(orders)[:6]) == [0.5] * 5 + [1.0]
    assert scale.title("Frequency") == "Frequency (log; ≤ 0 at the bottom)"
    # Too many customers at 0 for one floor: linear, drawn as they are.
    mostly_zero = pd.concat([orders, pd.Series([0.0] * 30)])
    assert not charts.axis_scale(mostly_zero, logged=True).log


def test_the_3d_chart_hovers_real_values_of_customers_on_the_floor(sample):
    sample = sample.assign(Recency=sample["Recency"].where(sample.index % 20 != 0, 0.0))
    fig = charts.rfm_scatter_3d(sample, ROLES, logged=["Recency"])
    assert fig.layout.scene.xaxis.type == "log"
    champions = fig.data[0]
    assert champions.x[0] > 0 and champions.customdata[0][0] == 0.0
    assert "customdata[0]" in champions.hovertemplate


def test_comparisons_name_arrivals_and_departures_in_words():
    assert charts.migration_label("new", "new") == "New customers"
    assert charts.migration_label("gone", "gone") == "Gone"
    assert charts.migration_label("2", "Loyal") == "2 · Loyal"
    migration = pd.DataFrame(
        {
            "from_segment": ["1", "new", "1"],
            "from_name": ["Champions", "new", "Champions"],
            "to_segment": ["1", "1", "gone"],
            "to_name": ["Champions", "Champions", "gone"],
            "customers": [10, 3, 2],
        }
    )
    sankey = charts.migration_sankey(migration)
    assert list(sankey.data[0].node.label) == [
        "1 · Champions",
        "New customers",
        "1 · Champions",
        "Gone",
    ]
    # "Before" and "After" sit above the plot, clear of the top nodes' labels.
    headers = sankey.layout.annotations
    assert [a.text for a in headers] == ["<b>Before</b>", "<b>After</b>"]
    assert all(a.yanchor == "bottom" and a.y == 1.0 for a in headers)
