"""Charts of a segmentation result: pure functions from the result tables to Plotly figures.

Every chart colours and labels a segment the same way (`segment_color`, `segment_label`), so
segment 3 is the same colour, under the same name, on every page. Pages only place the
figures; an empty input raises ValueError and the page decides what to show instead.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"
# Paul Tol's colour-blind-safe qualitative palette (plotly's "Safe"), one colour per segment.
SEGMENT_PALETTE = (
    "#88CCEE",
    "#CC6677",
    "#DDCC77",
    "#117733",
    "#332288",
    "#AA4499",
    "#44AA99",
    "#999933",
    "#882255",
    "#661100",
    "#888888",
)
# Okabe-Ito for the values of a categorical column: a different palette from the segments',
# so a "Region = North" bar is never mistaken for a segment.
CATEGORY_PALETTE = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#999999",
)
OTHER_COLOR = "#DDDDDD"
# Red below the average customer, blue above; readable with the common colour-vision deficiencies.
DIVERGING_SCALE = "RdBu"
METRIC_COLOR = "#332288"
# Not a segment colour: the suggested-k line must not read as "segment 2".
SUGGESTED_COLOR = "#D55E00"
Z_LABEL = "Centroid (z-score)"
RFM_ROLES = ("recency", "frequency", "spend")
# A feature is drawn on a log axis when the model logged it, or when it is skewed and its
# positive values span two orders of magnitude (a linear axis flattens all but the top few).
HEAVY_TAIL_SKEW = 1.0
HEAVY_TAIL_SPAN = 100.0
# Above this share of values at or below 0 a log axis would pile too many customers on its
# floor: such a feature stays linear.
MAX_SHARE_AT_FLOOR = 0.1
FLOOR_LABEL = "≤ 0"
# Which k the split diagram shows around the k on screen: k−1 to k+1. A fourth column left no
# room between the last two for their labels (Plotly writes the last column's on its left).
SPLITS_BEFORE, SPLITS_AFTER = 1, 1
SHORT_NAME = 18  # characters of a segment name beside a split diagram's node
# How a comparison names customers only in the later or only in the earlier segmentation.
ARRIVALS = {"new": "New customers", "gone": "Gone"}


@dataclass(frozen=True)
class AxisScale:
    """How one feature's customers are placed on an axis: linear, or log with ticks in real
    units (1, 10, 100, 1k) and values at or below 0 drawn at a floor labelled "≤ 0"."""

    log: bool = False
    floor: float | None = None
    tickvals: tuple[float, ...] = ()
    ticktext: tuple[str, ...] = ()

    def positions(self, values: pd.Series) -> np.ndarray:
        """Where the values are drawn: as they are, or non-positive ones at the log floor."""
        drawn = values.to_numpy(dtype=float)
        return drawn if self.floor is None else np.where(drawn > 0, drawn, self.floor)

    def title(self, feature: str) -> str:
        """The feature's axis title, saying when the axis is log and what sits on its floor."""
        if not self.log:
            return feature
        floor = "" if self.floor is None else f"; {FLOOR_LABEL} at the bottom"
        return f"{feature} (log{floor})"

    def axis(self) -> dict:
        """Layout settings of an axis drawing this feature."""
        if not self.log:
            return {"type": "linear"}
        return {"type": "log", "tickvals": list(self.tickvals), "ticktext": list(self.ticktext)}


def axis_scale(values: pd.Series, logged: bool = False) -> AxisScale:
    """A log axis for a feature the model logged or that is heavy-tailed, so that customers of
    every order of magnitude are told apart; linear otherwise, or when too many values are ≤ 0."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    positive = finite[finite > 0]
    if len(positive) == 0 or (len(finite) - len(positive)) > MAX_SHARE_AT_FLOOR * len(finite):
        return AxisScale()
    low, high = float(positive.min()), float(positive.max())
    heavy = high / low >= HEAVY_TAIL_SPAN and float(pd.Series(finite).skew()) > HEAVY_TAIL_SKEW
    if not (logged or heavy):
        return AxisScale()
    floor = low / 2 if len(positive) < len(finite) else None
    ticks = [t for t in _log_ticks(low, high) if floor is None or t >= low]
    floored = [] if floor is None else [floor]
    values_at = floored + ticks
    texts = [FLOOR_LABEL] * len(floored) + [_tick_text(t) for t in ticks]
    return AxisScale(True, floor, tuple(values_at), tuple(texts))


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten from below `low` to above `high`; 1-2-5 steps when they span few decades."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    return [step * 10.0**power for power in range(first, last + 1) for step in steps]


def _tick_text(value: float) -> str:
    """A tick in real units, short: 0.5, 1, 20, 1k, 10k, 2M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def segment_color(segment: int) -> str:
    """The fixed colour of one segment number, the same on every chart and page."""
    return SEGMENT_PALETTE[(int(segment) - 1) % len(SEGMENT_PALETTE)]


def segment_label(segment: int, name: str) -> str:
    """How a segment is called on every legend and axis, e.g. "1 · Champions"."""
    name = "" if name is None or (isinstance(name, float) and math.isnan(name)) else str(name)
    return f"{int(segment)} · {name.strip() or f'Segment {int(segment)}'}"


def segment_sizes(segments: pd.DataFrame) -> go.Figure:
    """How many customers each segment holds and its share of the whole base."""
    _require_rows(segments, "There are no segments to chart.")
    _require_columns(segments, ["segment", "name", "size", "share"], "segments")
    segments = segments.sort_values("segment")
    numbers = [int(number) for number in segments["segment"]]
    labels = _labels(segments)
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=segments["size"].to_numpy(),
            marker_color=[segment_color(number) for number in numbers],
            text=[f"{share:.1%}" for share in segments["share"]],
            textposition="outside",
            customdata=segments["share"].to_numpy(),
            hovertemplate="<b>%{x}</b><br>%{y:,} customers<br>%{customdata:.1%} of all"
            "<extra></extra>",
            showlegend=False,
        )
    )
    fig.update_xaxes(title_text="Segment", categoryorder="array", categoryarray=labels)
    # Headroom so the share label above the tallest bar is not clipped.
    fig.update_yaxes(title_text="Customers", range=[0, segments["size"].max() * 1.15])
    return _finish(fig, "Customers per segment", height=400)


def profile_heatmap(segments: pd.DataFrame, features: Sequence[str]) -> go.Figure:
    """Which features set each segment apart: centroids above (blue) or below (red) average."""
    _require_rows(segments, "There are no segments to profile.")
    _require_features(features)
    _require_columns(
        segments, ["segment", "name", *[f"{feature}_z" for feature in features]], "segments"
    )
    segments = segments.sort_values("segment")
    labels = _labels(segments)
    z = segments[[f"{feature}_z" for feature in features]].to_numpy(dtype=float)
    hover_text = [
        [_average_text(row, feature) for feature in features] for _, row in segments.iterrows()
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(features),
            y=labels,
            text=hover_text,
            texttemplate="%{z:.2f}",
            colorscale=DIVERGING_SCALE,
            zmid=0,
            colorbar_title_text=Z_LABEL,
            hovertemplate="<b>%{y}</b> · %{x}<br>"
            + Z_LABEL
            + ": %{z:.2f}<br>%{text}<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_xaxes(title_text="Feature")
    # Segment 1 on top, in the order of every other chart.
    fig.update_yaxes(title_text="Segment", autorange="reversed")
    return _finish(fig, "Segment profiles", height=_rows_height(len(segments), 45, 300))


def rfm_overlap(overlap: pd.DataFrame) -> go.Figure:
    """Where each segment's customers sit among the classic RFM segments: counts, coloured by
    the share of the segment's customers, so a segment that is mostly 'At risk' stands out."""
    _require_rows(overlap, "There are no segments to compare with RFM segments.")
    counts = overlap.to_numpy(dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1) * 100
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=list(overlap.columns),
            y=list(overlap.index),
            text=counts.astype(int),
            texttemplate="%{text:,}",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar_title_text="% of segment",
            hovertemplate="<b>%{y}</b><br>RFM segment %{x}: %{text:,} customers "
            "(%{z:.0f}% of the segment)<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_xaxes(title_text="RFM segment (R×F grid)", tickangle=-30)
    fig.update_yaxes(title_text="Segment", autorange="reversed")
    return _finish(fig, "Segments and RFM segments", height=_rows_height(len(overlap), 45, 320))


def radar(segments: pd.DataFrame, features: Sequence[str]) -> go.Figure:
    """Each segment's shape across all features at once, against the average customer (0)."""
    _require_rows(segments, "There are no segments to draw.")
    _require_features(features)
    _require_columns(
        segments, ["segment", "name", *[f"{feature}_z" for feature in features]], "segments"
    )
    segments = segments.sort_values("segment")
    # Repeat the first feature so each outline closes.
    theta = [*features, features[0]]
    fig = go.Figure()
    fig.add_trace(
        go.Scatterpolar(
            r=[0.0] * len(theta),
            theta=theta,
            mode="lines",
            name="Average customer",
            line={"color": "#888888", "dash": "dash", "width": 1},
            hoverinfo="skip",
        )
    )
    z = segments[[f"{feature}_z" for feature in features]].to_numpy(dtype=float)
    for (number, name), r in zip(_numbers_and_names(segments), z.tolist(), strict=True):
        fig.add_trace(
            go.Scatterpolar(
                r=[*r, r[0]],
                theta=theta,
                mode="lines+markers",
                name=segment_label(number, name),
                legendgroup=str(number),
                line={"color": segment_color(number), "width": 2},
                marker={"color": segment_color(number), "size": 6},
                hovertemplate="<b>%{fullData.name}</b><br>%{theta}: %{r:.2f}<extra></extra>",
            )
        )
    # Spokes at 180/n + k·360/n degrees leave the horizontal radial axis between two of them, so
    # its ticks and title cross no feature's spoke or label (and stay readable, not rotated).
    fig.update_polars(
        angularaxis_rotation=180 / len(features),
        # No axis title: on the axis it ran into the tick labels; the subtitle says it instead.
        radialaxis={
            "angle": 0,
            "tickangle": 0,
            "nticks": 5,
            "side": "counterclockwise",  # ticks above the axis
        },
        bgcolor="white",
    )
    fig = _finish(fig, "Segment shapes across features", height=540)
    fig.update_layout(
        title_subtitle_text=f"{Z_LABEL} of each segment; the dashed line (0) is the average "
        "customer"
    )
    return fig


def feature_distributions(
    sample: pd.DataFrame, features: Sequence[str], kind: str = "box", logged: Collection[str] = ()
) -> go.Figure:
    """How each feature's values spread inside each segment, and how much segments overlap
    (heavy-tailed and `logged` features on log axes, see `axis_scale`)."""
    if kind not in ("box", "violin"):
        raise ValueError(f"kind must be 'box' or 'violin', not {kind!r}.")
    _require_rows(sample, "There are no customers in the chart sample.")
    _require_features(features)
    _require_columns(sample, ["segment", "segment_name", *features], "sample")
    groups = _segment_groups(sample)
    labels = [label for _, label, _ in groups]
    scales = _scales(sample, features, logged)
    cols = min(2, len(features))
    rows = math.ceil(len(features) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[scales[feature].title(feature) for feature in features],
        vertical_spacing=0.25 / rows,
        horizontal_spacing=0.08,
    )
    for index, feature in enumerate(features):
        row, col = index // cols + 1, index % cols + 1
        for number, label, customers in groups:
            # Default hover: the quartiles and mean of the box or violin.
            common = {
                "x": [label] * len(customers),
                "y": scales[feature].positions(customers[feature]),
                "name": label,
                "legendgroup": str(number),
                "showlegend": index == 0,
                "marker_color": segment_color(number),
                "line_color": segment_color(number),
            }
            if kind == "box":
                trace = go.Box(**common, boxmean=True, boxpoints="outliers")
            else:
                trace = go.Violin(**common, box_visible=True, meanline_visible=True, points=False)
            fig.add_trace(trace, row=row, col=col)
        fig.update_yaxes(scales[feature].axis(), row=row, col=col)
    # Overlay: one box per segment at its own category, not side-by-side offsets.
    fig.update_layout(boxmode="overlay", violinmode="overlay")
    # Ticks show only the segment number; the legend and hover carry the full label.
    fig.update_xaxes(
        categoryorder="array",
        categoryarray=labels,
        tickvals=labels,
        ticktext=[str(number) for number, _, _ in groups],
    )
    # Only the lowest plot of each column names its axis: a title between two rows would run
    # into the subplot title below it.
    for index in range(max(0, len(features) - cols), len(features)):
        fig.update_xaxes(title_text="Segment", row=index // cols + 1, col=index % cols + 1)
    title = "Feature distributions by segment" + (" (violins)" if kind == "violin" else "")
    return _finish(fig, title, height=80 + 300 * rows)


def pca_scatter(sample: pd.DataFrame, hover: Sequence[str] = ()) -> go.Figure:
    """Whether segments separate on a 2-D map of all features (first two principal components)."""
    _require_rows(sample, "There are no customers in the chart sample.")
    _require_columns(sample, ["segment", "segment_name", "pc1", "pc2", *hover], "sample")
    fig = go.Figure()
    for number, label, customers in _segment_groups(sample):
        fig.add_trace(
            go.Scatter(
                x=customers["pc1"].to_numpy(dtype=float),
                y=customers["pc2"].to_numpy(dtype=float),
                mode="markers",
                name=label,
                legendgroup=str(number),
                marker={"color": segment_color(number), "size": 6, "opacity": 0.7},
                customdata=customers[list(hover)].to_numpy() if hover else None,
                hovertemplate="<b>%{fullData.name}</b><br>"
                "Component 1: %{x:.2f}<br>Component 2: %{y:.2f}"
                + _hover_lines(hover)
                + "<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="Principal component 1", zeroline=False)
    fig.update_yaxes(title_text="Principal component 2", zeroline=False)
    return _finish(fig, "Segments on a map of all features (PCA)", height=520)


def missing_rfm_roles(sample: pd.DataFrame, roles: Mapping[str, str]) -> list[str]:
    """Which of recency, frequency and spend cannot be drawn: no column, or not in the sample."""
    return [role for role in RFM_ROLES if not roles.get(role) or roles[role] not in sample.columns]


def rfm_scatter_3d(
    sample: pd.DataFrame, roles: Mapping[str, str], logged: Collection[str] = ()
) -> go.Figure | None:
    """Where segments sit in recency, frequency and spend (log axes as in `axis_scale`); None
    when one of those is unknown."""
    _require_rows(sample, "There are no customers in the chart sample.")
    _require_columns(sample, ["segment", "segment_name"], "sample")
    if missing_rfm_roles(sample, roles):
        return None
    columns = [roles[role] for role in RFM_ROLES]
    titles = [_role_title(role, roles[role]) for role in RFM_ROLES]
    scales = _scales(sample, columns, logged)
    fig = go.Figure()
    for number, label, customers in _segment_groups(sample):
        x, y, z = (scales[column].positions(customers[column]) for column in columns)
        fig.add_trace(
            go.Scatter3d(
                x=x,
                y=y,
                z=z,
                mode="markers",
                name=label,
                legendgroup=str(number),
                marker={"color": segment_color(number), "size": 3, "opacity": 0.75},
                # Hover shows the real values, also of customers drawn at a log axis's floor.
                customdata=customers[columns].to_numpy(dtype=float),
                hovertemplate="<b>%{fullData.name}</b>"
                + "".join(f"<br>{t}: %{{customdata[{i}]:,.2f}}" for i, t in enumerate(titles))
                + "<extra></extra>",
            )
        )
    fig.update_scenes(
        **{
            f"{axis}axis": {**scales[column].axis(), "title_text": scales[column].title(title)}
            for axis, column, title in zip("xyz", columns, titles, strict=True)
        },
        # A little further out and lower than Plotly's default view, so no tick label is cut off.
        camera_eye={"x": 1.75, "y": 1.75, "z": 1.05},
    )
    return _finish(fig, "Recency, frequency and spend by segment", height=640)


def scatter_matrix(
    sample: pd.DataFrame, features: Sequence[str], logged: Collection[str] = ()
) -> go.Figure:
    """Every pair of features side by side, to see which pairs separate the segments (log axes
    as in `axis_scale`)."""
    _require_rows(sample, "There are no customers in the chart sample.")
    _require_features(features)
    if len(features) < 2:
        raise ValueError("A scatter matrix needs at least two features.")
    _require_columns(sample, ["segment", "segment_name", *features], "sample")
    scales = _scales(sample, features, logged)
    fig = go.Figure()
    for number, label, customers in _segment_groups(sample):
        fig.add_trace(
            go.Splom(
                dimensions=[
                    {
                        "label": scales[feature].title(feature),
                        "values": scales[feature].positions(customers[feature]),
                    }
                    for feature in features
                ],
                name=label,
                legendgroup=str(number),
                marker={"color": segment_color(number), "size": 3, "opacity": 0.6},
                # The lower triangle already holds every pair; the diagonal is x against x.
                showupperhalf=False,
                diagonal_visible=False,
            )
        )
    # Dimension i is drawn on x axis i+1 and y axis i+1 (Plotly's splom default).
    for index, feature in enumerate(features, start=1):
        suffix = "" if index == 1 else str(index)
        fig.update_layout({f"xaxis{suffix}": scales[feature].axis()})
        fig.update_layout({f"yaxis{suffix}": scales[feature].axis()})
    size = min(1000, max(450, 170 * len(features)))
    return _finish(fig, "Feature pairs by segment", height=size)


def categorical_mix(
    mix: pd.DataFrame, segments: pd.DataFrame, column: str, top: int = 8
) -> go.Figure:
    """What each segment is made of for one categorical column (shares within the segment).

    The `top - 1` most frequent values overall keep their own colour when there are more than
    `top`; the rest are summed into one "Other (n values)" slice so the legend stays readable.
    """
    _require_rows(segments, "There are no segments to compare.")
    _require_columns(mix, ["segment", "column", "value", "count"], "mix")
    _require_columns(segments, ["segment", "name"], "segments")
    counts, values, other = _fold_rare_values(_column_counts(mix, column), top)
    table = counts.pivot_table(
        index="segment", columns="value", values="count", aggfunc="sum", fill_value=0
    )
    table = table[table.sum(axis=1) > 0].sort_index()
    percent = table.div(table.sum(axis=1), axis=0) * 100
    names = dict(_numbers_and_names(segments))
    labels = [segment_label(number, names.get(number, "")) for number in table.index]
    fig = go.Figure()
    for index, value in enumerate(values):
        color = OTHER_COLOR if value == other else _category_color(index)
        fig.add_trace(
            go.Bar(
                x=percent[value].to_numpy(),
                y=labels,
                orientation="h",
                name=value,
                marker_color=color,
                customdata=table[value].to_numpy(),
                texttemplate="%{x:.0f}%",
                textposition="inside",
                hovertemplate=f"<b>%{{y}}</b><br>{column} = {value}: %{{x:.1f}}%"
                " (%{customdata:,} customers)<extra></extra>",
            )
        )
    _stacked_shares_layout(fig, column, labels)
    return _finish(
        fig, f"{column} mix within each segment", height=_rows_height(len(labels), 45, 300)
    )


def sweep_metrics(sweep: pd.DataFrame, suggested_k: int | None) -> go.Figure:
    """How the quality measures change with the number of segments, and which k is suggested
    (none yet while a sweep runs)."""
    _require_rows(sweep, "No number of segments has been tried yet.")
    metrics = [
        ("within_ss", "Elbow: spread within segments (look for the bend)", "Within-segment spread"),
        ("silhouette", "Silhouette (higher is better)", "Silhouette"),
        ("calinski_harabasz", "Calinski–Harabasz (higher is better)", "Calinski–Harabasz"),
        ("davies_bouldin", "Davies–Bouldin (lower is better)", "Davies–Bouldin"),
    ]
    _require_columns(sweep, ["k", *[column for column, _, _ in metrics]], "sweep")
    sweep = sweep.sort_values("k")
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[title for _, title, _ in metrics],
        vertical_spacing=0.18,
        horizontal_spacing=0.12,
    )
    for index, (column, _, axis_title) in enumerate(metrics):
        row, col = index // 2 + 1, index % 2 + 1
        fig.add_trace(
            go.Scatter(
                x=sweep["k"].to_numpy(),
                y=sweep[column].to_numpy(dtype=float),
                mode="lines+markers",
                name=axis_title,
                line={"color": METRIC_COLOR},
                marker={"color": METRIC_COLOR, "size": 7},
                showlegend=False,
                hovertemplate=f"k = %{{x}}<br>{axis_title}: %{{y:,.3f}}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        if suggested_k is not None:
            fig.add_vline(
                x=suggested_k,
                line={"color": SUGGESTED_COLOR, "dash": "dash", "width": 2},
                row=row,
                col=col,
            )
        fig.update_yaxes(title_text=axis_title, row=row, col=col)
    fig.update_xaxes(title_text="Number of segments (k)", dtick=1)
    fig.add_annotation(
        text=(
            f"Suggested: k = {int(suggested_k)} (dashed line)"
            if suggested_k is not None
            else "The suggestion comes when every k is measured"
        ),
        xref="paper",
        yref="paper",
        x=1,
        y=1.1,
        xanchor="right",
        showarrow=False,
        font={"color": SUGGESTED_COLOR},
    )
    return _finish(fig, "Choosing the number of segments", height=620)


def segment_splits(
    splits: pd.DataFrame, names: Mapping[int, Mapping[int, str]], around: int | None = None
) -> go.Figure:
    """Where each segment's customers go when k grows by one: which segments split, which hold.
    Only the k next to `around` (the k on screen, one below and one above) are drawn: ten
    columns of up to ten segments leave no room for a label."""
    _require_rows(splits, "A split diagram needs at least two numbers of segments.")
    _require_columns(splits, ["k", "source", "target", "count"], "splits")
    splits = splits_window(splits, around)
    nodes: dict[tuple[int, int], int] = {}
    labels: list[str] = []
    colors: list[str] = []

    def node(k: int, segment: int) -> int:
        if (k, segment) not in nodes:
            nodes[(k, segment)] = len(labels)
            labels.append(segment_label(segment, _short(names.get(k, {}).get(segment, ""))))
            colors.append(segment_color(segment))
        return nodes[(k, segment)]

    sources, targets, values, link_colors = [], [], [], []
    for row in splits.sort_values(["k", "source", "target"]).itertuples():
        k, source, target = int(row.k), int(row.source), int(row.target)
        sources.append(node(k, source))
        targets.append(node(k + 1, target))
        values.append(int(row.count))
        link_colors.append(_with_alpha(segment_color(source), 0.35))
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": labels,
                "color": colors,
                "pad": 18,
                "thickness": 14,
                "customdata": [f"k={k}" for k, _ in nodes],
                "hovertemplate": "%{customdata} · %{label}<br>%{value:,} customers<extra></extra>",
            },
            link={
                "source": sources,
                "target": targets,
                "value": values,
                "color": link_colors,
                "hovertemplate": "%{value:,} customers<extra></extra>",
            },
        )
    )
    ks = sorted({k for k, _ in nodes})
    _column_headers(fig, [f"k = {k}" for k in ks])
    return _finish(
        fig,
        f"How segments split as k grows from {ks[0]} to {ks[-1]}",
        height=max(420, 120 + 55 * ks[-1]),
    )


def splits_window(splits: pd.DataFrame, around: int | None) -> pd.DataFrame:
    """The splits from k−1 to k+1 around `around` (shifted inside the measured k at either end),
    or all of them without a k."""
    measured = sorted({int(k) for k in splits["k"]})
    if around is None:
        return splits
    first = min(max(around - SPLITS_BEFORE, measured[0]), measured[-1])
    last = first + SPLITS_BEFORE + SPLITS_AFTER - 1  # the last k a split starts from
    if last > measured[-1]:
        first = max(measured[0], first - (last - measured[-1]))
        last = measured[-1]
    return splits[splits["k"].between(first, last)]


def _short(name: str) -> str:
    """A segment name cut to fit beside a Sankey node ("Potential loyalis…")."""
    return name if len(name) <= SHORT_NAME else name[: SHORT_NAME - 1].rstrip() + "…"


def _column_headers(fig: go.Figure, headers: Sequence[str]) -> None:
    """Headers above a Sankey's columns, clear of its top node's label."""
    for index, text in enumerate(headers):
        fig.add_annotation(
            text=f"<b>{text}</b>",
            x=index / max(1, len(headers) - 1),
            y=1.0,
            xref="paper",
            yref="paper",
            yanchor="bottom",
            yshift=8,
            xanchor=("left", "center", "right")[(index > 0) + (index == len(headers) - 1)],
            showarrow=False,
        )


def _scales(
    sample: pd.DataFrame, features: Sequence[str], logged: Collection[str]
) -> dict[str, AxisScale]:
    """Each feature's axis, decided on the whole sample so every segment shares it."""
    return {feature: axis_scale(sample[feature], feature in logged) for feature in features}


def _with_alpha(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def _finish(fig: go.Figure, title: str, height: int) -> go.Figure:
    """The look every chart shares: template, title, height, legend and margins."""
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 60, "r": 30, "t": 80, "b": 50},
        font={"size": 13},
        hoverlabel={"font_size": 12},
        # Legend symbols at a readable size even where markers are tiny (3-D, scatter matrix).
        legend_itemsizing="constant",
    )
    # Long segment names push the plot over rather than being cut off.
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    if not fig.layout.legend.title.text:
        fig.update_layout(legend_title_text="Segment")
    return fig


def _require_rows(frame: pd.DataFrame, message: str) -> None:
    if frame is None or len(frame) == 0:
        raise ValueError(message)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"The {what} table has no column(s) {', '.join(map(repr, missing))}.")


def _require_features(features: Sequence[str]) -> None:
    if not features:
        raise ValueError("No features were chosen, so there is nothing to chart.")


def _segment_numbers(frame: pd.DataFrame) -> list[int]:
    return [int(number) for number in pd.unique(frame["segment"])]


def _numbers_and_names(segments: pd.DataFrame) -> list[tuple[int, str]]:
    return [
        (int(number), name)
        for number, name in zip(segments["segment"], segments["name"], strict=True)
    ]


def _labels(segments: pd.DataFrame) -> list[str]:
    return [segment_label(number, name) for number, name in _numbers_and_names(segments)]


def _segment_groups(sample: pd.DataFrame) -> list[tuple[int, str, pd.DataFrame]]:
    """The sample split by segment, in segment order, each with its label."""
    groups = []
    for number, customers in sample.groupby("segment", sort=True):
        names = customers["segment_name"].dropna()
        label = segment_label(int(number), names.iloc[0] if len(names) else "")
        groups.append((int(number), label, customers))
    return groups


def _average_text(row: pd.Series, feature: str) -> str:
    lines = []
    for statistic, title in (("mean", "Average"), ("median", "Median")):
        value = row.get(f"{feature}_{statistic}")
        if value is not None and not pd.isna(value):
            lines.append(f"{title} {feature}: {_format_number(float(value))}")
    return "<br>".join(lines)


def _format_number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def _hover_lines(columns: Sequence[str]) -> str:
    return "".join(f"<br>{column}: %{{customdata[{i}]}}" for i, column in enumerate(columns))


def _role_title(role: str, column: str) -> str:
    title = role.capitalize()
    return title if column.lower() == role else f"{title} ({column})"


def _category_color(index: int) -> str:
    return CATEGORY_PALETTE[index % len(CATEGORY_PALETTE)]


def _rows_height(rows: int, per_row: int, minimum: int) -> int:
    return int(np.clip(140 + per_row * rows, minimum, 900))


def _column_counts(mix: pd.DataFrame, column: str) -> pd.DataFrame:
    """One column's counts per segment and value, missing values named so they get a slice too."""
    counts = mix.loc[mix["column"] == column, ["segment", "value", "count"]].copy()
    if counts.empty or counts["count"].sum() <= 0:
        raise ValueError(f"There are no values of '{column}' to show.")
    counts["value"] = counts["value"].where(counts["value"].notna(), "(missing)").astype(str)
    counts["segment"] = counts["segment"].astype(int)
    return counts


def _fold_rare_values(counts: pd.DataFrame, top: int) -> tuple[pd.DataFrame, list[str], str | None]:
    """Beyond `top` values, all but the `top - 1` most frequent become one "Other (n values)",
    so the legend stays readable. Returns the counts, the values by frequency and that name."""
    ranked = counts.groupby("value")["count"].sum().sort_values(ascending=False, kind="stable")
    if len(ranked) <= top:
        return counts, list(ranked.index), None
    kept = list(ranked.index[: top - 1])
    other = f"Other ({len(ranked) - len(kept)} values)"
    counts["value"] = counts["value"].where(counts["value"].isin(kept), other)
    return counts, [*kept, other], other


def _stacked_shares_layout(fig: go.Figure, column: str, labels: Sequence[str]) -> None:
    """Stack the bars of each segment into 100%, segments top to bottom in `labels` order."""
    fig.update_layout(
        barmode="stack",
        legend_title_text=column,
        # Small slices stay unlabelled rather than overflowing; the hover still has them.
        uniformtext={"minsize": 10, "mode": "hide"},
    )
    fig.update_xaxes(title_text="Share of the segment's customers", range=[0, 100], ticksuffix="%")
    fig.update_yaxes(
        title_text="Segment", categoryorder="array", categoryarray=labels, autorange="reversed"
    )


def migration_heatmap(migration: pd.DataFrame) -> go.Figure:
    """Where each segment's customers went between two segmentations: customers in each cell,
    coloured by the share of the row, so a segment that mostly moved stands out."""
    table, rows, columns = _migration_grid(migration)
    counts = table.to_numpy(dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1) * 100
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=columns,
            y=rows,
            text=counts.astype(int),
            texttemplate="%{text:,}",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar_title_text="% of the row",
            hovertemplate="<b>%{y}</b> → <b>%{x}</b><br>%{text:,} customers "
            "(%{z:.0f}% of the row)<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    fig.update_xaxes(title_text="Segment after", tickangle=-30)
    fig.update_yaxes(title_text="Segment before", autorange="reversed")
    return _finish(
        fig, "Where customers went between the two segmentations", _rows_height(len(rows), 45, 320)
    )


def migration_sankey(migration: pd.DataFrame) -> go.Figure:
    """How customers flowed from the earlier segments (left, with new customers) to the later
    ones (right, with customers gone); the width of a band is its customers."""
    _require_migration(migration)
    left = _migration_nodes(migration, "from")
    right = _migration_nodes(migration, "to")
    nodes = [*left, *right]
    position = {("from", s): i for i, (s, _) in enumerate(left)}
    position |= {("to", s): len(left) + i for i, (s, _) in enumerate(right)}
    sources = [position[("from", str(s))] for s in migration["from_segment"]]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": [label for _, label in nodes],
                "color": [_migration_color(s) for s, _ in nodes],
                "pad": 10,
                "thickness": 14,
                "hovertemplate": "%{label}<br>%{value:,} customers<extra></extra>",
            },
            link={
                "source": sources,
                "target": [position[("to", str(s))] for s in migration["to_segment"]],
                "value": migration["customers"].astype(int).tolist(),
                "color": [_with_alpha(_migration_color(nodes[i][0]), 0.35) for i in sources],
                "hovertemplate": "%{source.label} → %{target.label}<br>%{value:,} customers"
                "<extra></extra>",
            },
        )
    )
    _column_headers(fig, ["Before", "After"])
    height = max(420, 80 + 45 * max(len(left), len(right)))
    return _finish(fig, "How customers moved between the two segmentations", height=height)


def _migration_grid(migration: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Customers per before (rows) and after (columns) segment, in segment order, with labels."""
    _require_migration(migration)
    frame = migration.assign(
        from_segment=migration["from_segment"].astype(str),
        to_segment=migration["to_segment"].astype(str),
    )
    table = frame.pivot_table(
        index="from_segment", columns="to_segment", values="customers", aggfunc="sum", fill_value=0
    )
    left, right = _migration_nodes(frame, "from"), _migration_nodes(frame, "to")
    table = table.reindex(index=[s for s, _ in left], columns=[s for s, _ in right], fill_value=0)
    return table, [label for _, label in left], [label for _, label in right]


def _require_migration(migration: pd.DataFrame) -> None:
    _require_rows(migration, "There are no customers to compare.")
    _require_columns(
        migration, ["from_segment", "from_name", "to_segment", "to_name", "customers"], "migration"
    )


def _migration_nodes(migration: pd.DataFrame, side: str) -> list[tuple[str, str]]:
    """The segments on one side of a migration table with their labels: numbers in order
    ("1 · Champions"), then new customers or those gone."""
    pairs = dict(
        zip(migration[f"{side}_segment"].astype(str), migration[f"{side}_name"], strict=True)
    )
    numbers = sorted((s for s in pairs if s.isdigit()), key=int)
    others = sorted(s for s in pairs if not s.isdigit())
    return [(s, migration_label(s, pairs[s])) for s in [*numbers, *others]]


def migration_label(segment: str | int, name: str) -> str:
    """One side of a migration cell as people say it: "1 · Champions", "New customers", "Gone"."""
    segment = str(segment)
    return segment_label(int(segment), name) if segment.isdigit() else ARRIVALS.get(segment, name)


def _migration_color(segment: str) -> str:
    """A segment's own colour; grey for customers who arrived or left."""
    return segment_color(int(segment)) if segment.isdigit() else OTHER_COLOR
