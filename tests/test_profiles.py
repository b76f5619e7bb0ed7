"""Segment names, the headline of every result: a known archetype gets its name, and the reason
says why in the analyst's words. Plain profiles in, no Spark."""

from __future__ import annotations

from segmentation.profiles import (
    SegmentProfile,
    archetypes,
    name_segments,
    order_key,
    reason,
)

ROLES = {"recency": "Recency", "frequency": "Frequency", "spend": "Spend"}


def segment(
    number: int,
    recency: float = 0.0,
    frequency: float = 0.0,
    spend: float = 0.0,
    *,
    size: int = 10,
    medians: tuple[float, float, float] = (30, 4, 500),
    scores: tuple[float, float, float] | None = None,
) -> SegmentProfile:
    """A segment with the given centroid z-scores of Recency, Frequency and Spend."""
    columns = ("Recency", "Frequency", "Spend")
    return SegmentProfile(
        segment=number,
        size=size,
        share=size / 100,
        stats={c: {"median": m, "mean": m} for c, m in zip(columns, medians, strict=True)},
        z=dict(zip(columns, (recency, frequency, spend), strict=True)),
        scores=dict(zip(("r_score", "f_score", "m_score"), scores, strict=True)) if scores else {},
    )


def test_each_archetype_gets_its_name_from_recency_frequency_and_spend():
    # Recency is in days: a negative z-score is a recent buyer.
    assert archetypes(segment(1, -1.0, 1.2, 1.5), ROLES)[0] == "Champions"
    assert archetypes(segment(1, 1.2, 1.0, 0.8), ROLES)[0] == "At risk"
    assert archetypes(segment(1, 1.2, -0.8, -0.9), ROLES)[0] == "Hibernating"
    assert archetypes(segment(1, -1.1, -0.9, 0.0), ROLES)[0] == "New customers"
    assert archetypes(segment(1, 0.0, 0.0, 1.0), ROLES)[0] == "Big spenders"
    assert archetypes(segment(1, 0.0, 0.5, 0.0), ROLES)[0] == "Loyal"
    assert archetypes(segment(1, -0.5, 0.0, 0.0), ROLES)[0] == "Promising"
    assert archetypes(segment(1, 0.0, 0.0, -0.7), ROLES)[0] == "Bargain hunters"
    assert archetypes(segment(1, 0.1, -0.1, 0.2), ROLES) == ["Regulars"]


def test_without_rfm_roles_a_segment_is_named_by_its_two_strongest_traits():
    profile = SegmentProfile(
        segment=1, size=5, share=0.5, stats={}, z={"Age": -1.4, "Visits": 0.9, "Tenure": 0.2}
    )
    assert archetypes(profile, {}) == ["Low Age & High Visits"]
    profile.z = {"Age": 0.1, "Visits": -0.2}
    assert archetypes(profile, {}) == ["Average"]


def test_without_scores_bigger_segments_pick_first_and_a_taken_name_gets_a_number():
    loyal = [segment(n, 0.0, 0.6, 0.0, size=size) for n, size in ((1, 30), (2, 50), (3, 20))]
    name_segments(loyal, ROLES)
    # Only "Loyal" and "Regulars" fit: the biggest takes Loyal, the next Regulars, the last Loyal 2.
    assert [s.name for s in loyal] == ["Regulars", "Loyal", "Loyal 2"]


def test_four_segments_in_one_grid_cell_are_told_apart_by_spend():
    sleepers = [
        segment(n, scores=(1.2, 1.3, m)) for n, m in ((1, 1.1), (2, 3.9), (3, 2.5), (4, 2.0))
    ]
    name_segments(sleepers, ROLES)
    assert [s.name for s in sleepers] == [
        "Hibernating (low spend)",
        "Hibernating (high spend)",
        "Hibernating (mid spend 1)",
        "Hibernating (mid spend 2)",
    ]


def test_the_reason_says_the_strongest_traits_in_real_units():
    champions = segment(1, -1.2, 1.6, 0.9, medians=(9, 12, 1480), scores=(4.8, 4.6, 4.9))
    assert reason(champions, ROLES) == (
        "12 orders (+1.6σ), last order 9 days ago, spend +0.9σ (median 1,480), "
        "average RFM scores 4.8-4.6-4.9"
    )
    one_order = segment(2, 0.2, -1.1, -0.1, medians=(40, 1, 35.5))
    assert reason(one_order, ROLES) == "1 order (-1.1σ)"
    average = segment(3, 0.1, 0.0, -0.2, medians=(30, 4, 2.5))
    assert reason(average, ROLES) == "close to the average customer: spend -0.2σ (median 2.5)"


def test_segments_are_numbered_by_mean_spend_then_size():
    a, b, c = segment(1, size=10), segment(2, size=30), segment(3, size=20)
    a.stats["Spend"]["mean"], b.stats["Spend"]["mean"], c.stats["Spend"]["mean"] = 100, 900, 100
    ordered = sorted([a, b, c], key=order_key("Spend", ["Recency", "Frequency", "Spend"]))
    assert [s.segment for s in ordered] == [2, 3, 1]
    # Without a spend feature, by the first feature.
    a.stats["Frequency"]["mean"] = 9
    ordered = sorted([a, b, c], key=order_key("Spend", ["Frequency"]))
    assert [s.segment for s in ordered] == [1, 2, 3]
