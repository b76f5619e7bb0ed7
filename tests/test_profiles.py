"""Segment names, the headline of every result: a known archetype gets its name, and the reason
says why in the analyst's words. Plain profiles in, no Spark."""

from __future__ import annotations

import math

from segmentation.profiles import (
    SegmentProfile,
    agreement_text,
    archetypes,
    name_segments,
    named_rfm_segment,
    order_key,
    plurality,
    profiles_frame,
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
    scores: tuple[int, int, int] | None = None,
    rfm: dict[str, int] | None = None,
) -> SegmentProfile:
    """A segment with the given centroid z-scores of Recency, Frequency and Spend and, given
    `rfm`, its customers per RFM segment."""
    columns = ("Recency", "Frequency", "Spend")
    return SegmentProfile(
        segment=number,
        size=size,
        share=size / 100,
        stats={
            c: dict.fromkeys(("mean", "median", "min", "max"), m)
            for c, m in zip(columns, medians, strict=True)
        },
        z=dict(zip(columns, (recency, frequency, spend), strict=True)),
        scores=dict(zip(("r_score", "f_score", "m_score"), scores, strict=True)) if scores else {},
        rfm=rfm or {},
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


def test_four_look_alikes_apart_by_spend_are_told_apart_by_spend():
    sleepers = [
        segment(n, spend=z, medians=(300, 1, m), rfm={"Hibernating": 8, "At risk": 2})
        for n, z, m in ((1, -1.1, 20), (2, 1.9, 400), (3, 0.5, 150), (4, 0.0, 90))
    ]
    name_segments(sleepers, ROLES)
    assert [s.name for s in sleepers] == [
        "Hibernating (low spend)",
        "Hibernating (high spend)",
        "Hibernating (mid spend 2)",
        "Hibernating (mid spend 1)",
    ]
    assert sleepers[1].reason.startswith("median spend 400 (+1.9σ)")


def test_a_segment_is_named_by_where_most_of_its_customers_are_not_by_one_whale():
    # 90 of 100 customers are Hibernating by their own scores; one 77,183 order lifts the mean
    # spend 38-fold (and averaged scores would have called the segment "Loyal").
    whale = segment(1, 0.9, 0.4, 0.8, size=100, medians=(326, 1, 40))
    whale.stats["Spend"]["mean"] = 1_540
    whale.rfm = {"Hibernating": 90, "Loyal": 6, "At risk": 4}
    name_segments([whale], ROLES)
    assert (whale.name, whale.rfm_name, whale.rfm_agreement) == ("Hibernating", "Hibernating", 90)
    assert "median spend 40" in whale.reason and "last order 326 days ago" in whale.reason


def test_look_alikes_that_differ_by_age_are_called_younger_and_older():
    roles = {**ROLES, "age": "Age"}
    pair = []
    for number, age_z, age, spend_z, spend in ((1, -0.6, 56, 0.05, 111), (2, 0.7, 64, 0.0, 110)):
        profile = segment(number, 1.5, -0.4, spend_z, medians=(330, 2, spend))
        profile.stats["Age"] = {"median": age, "mean": age}
        profile.z["Age"] = age_z
        profile.rfm = {"Hibernating": 70, "At risk": 25, "About to sleep": 5}
        pair.append(profile)
    name_segments(pair, roles)
    assert [p.name for p in pair] == ["Hibernating (younger)", "Hibernating (older)"]
    assert [p.reason.split(",")[0] for p in pair] == ["median age 56", "median age 64"]


def test_names_hold_for_the_most_customers_and_stay_unique():
    segments = [
        segment(1, -1.0, 1.2, 1.5, rfm={"Champions": 40, "Loyal": 35, "Potential loyalists": 25}),
        segment(2, 0.0, 0.8, 0.2, medians=(60, 6, 500), rfm={"Loyal": 30, "Need attention": 40}),
        segment(3, 0.5, 0.1, -0.2, medians=(90, 3, 300), rfm={"Need attention": 51}),
        segment(4, 0.5, -0.1, 0.4, medians=(90, 2, 700), rfm={"Need attention": 60}),
        segment(5, 1.0, -1.0, 0.2, rfm={"Hibernating": 10}),
    ]
    segments[2].rfm["About to sleep"] = 49
    segments[3].rfm["Hibernating"] = 40
    name_segments(segments, ROLES)
    # Frequency lies furthest apart among the three "Need attention" (z 0.8, 0.1, -0.1).
    assert [s.name for s in segments] == [
        "Champions",
        "Need attention (more orders)",
        "Need attention (mid frequency)",
        "Need attention (fewer orders)",
        "Hibernating",
    ]
    assert len({s.name for s in segments}) == len(segments)
    assert [s.rfm_agreement for s in segments] == [40, 40, 51, 60, 10]
    # No other RFM segment holds more of a segment's customers; a tie goes to the better one.
    for s in segments:
        assert s.rfm_agreement == max(s.rfm.values())
    assert plurality({"Loyal": 30, "Champions": 30}) == "Champions"


def test_agreement_goes_to_the_segments_table_and_reads_as_a_sentence():
    profile = segment(1, 1.0, -0.5, -0.5, size=2_879, scores=(1, 2, 1))
    profile.rfm = {"Hibernating": 2_311, "At risk": 568}
    name_segments([profile], ROLES)
    row = profiles_frame([profile], ["Recency", "Frequency", "Spend"]).iloc[0]
    assert (row["rfm_name"], row["rfm_agreement"]) == ("Hibernating", 2_311)
    assert row["rfm_agreement_share"] == 2_311 / 2_879
    assert [row[f"{s}_median"] for s in ("r_score", "f_score", "m_score")] == [1, 2, 1]
    assert agreement_text(row.to_dict()) == (
        "2,311 of 2,879 customers (80%) are Hibernating by their own RFM scores"
    )
    # Without RFM scores, or renamed to a name of the analyst's own, nothing to agree with.
    assert agreement_text({"name": "Loyal", "size": 10}) is None
    assert agreement_text({"rfm_name": math.nan, "rfm_agreement": math.nan, "size": 10}) is None
    assert named_rfm_segment("Hibernating (older)") == "Hibernating"
    assert named_rfm_segment("Our VIPs") == named_rfm_segment("Loyalists (old)") == ""


def test_the_reason_says_the_strongest_traits_by_their_medians():
    champions = segment(1, -1.2, 1.6, 0.9, medians=(9, 12, 1480), scores=(5, 5, 5))
    assert reason(champions, ROLES) == (
        "median 12 orders (+1.6σ), last order 9 days ago, median spend 1,480 (+0.9σ), "
        "median RFM scores 5-5-5"
    )
    one_order = segment(2, 0.2, -1.1, -0.1, medians=(40, 1, 35.5))
    assert reason(one_order, ROLES) == "median 1 order (-1.1σ)"
    average = segment(3, 0.1, 0.0, -0.2, medians=(30, 4, 2.5))
    assert reason(average, ROLES) == "close to the average customer: median spend 2.5 (-0.2σ)"


def test_segments_are_numbered_by_mean_spend_then_size():
    a, b, c = segment(1, size=10), segment(2, size=30), segment(3, size=20)
    a.stats["Spend"]["mean"], b.stats["Spend"]["mean"], c.stats["Spend"]["mean"] = 100, 900, 100
    ordered = sorted([a, b, c], key=order_key("Spend", ["Recency", "Frequency", "Spend"]))
    assert [s.segment for s in ordered] == [2, 3, 1]
    # Without a spend feature, by the first feature.
    a.stats["Frequency"]["mean"] = 9
    ordered = sorted([a, b, c], key=order_key("Spend", ["Frequency"]))
    assert [s.segment for s in ordered] == [1, 2, 3]
