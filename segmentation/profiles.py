"""Segment profiles and names an analyst can act on, in RFM vocabulary.

With Recency, Frequency and Spend a segment is named by the RFM segment (segmentation.rfm) most
of its own customers fall in, so KMeans segments and RFM segments read together and the name
holds for as many of its customers as any name could; without them, by its strongest traits.
Reasons speak in medians, which a few whales do not move."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd

from segmentation.rfm import SEGMENTS

TRAIT_THRESHOLD = 0.3  # |z| below this is "about average" and not worth mentioning
# Words for look-alikes by where they sit on the feature that separates them: low, mid, high.
TIERS = {
    "recency": ("more recent", "mid recency", "less recent"),
    "frequency": ("fewer orders", "mid frequency", "more orders"),
    "spend": ("low spend", "mid spend", "high spend"),
    "age": ("younger", "mid age", "older"),
}


class SavedSegment(NamedTuple):
    """A saved segmentation's segment as an assignment keeps it, so its cards say what the run's
    say even after a rename."""

    number: int
    name: str  # as the analyst (re)named it
    rfm_name: str  # the RFM segment the run named it by ("" when none)


@dataclass
class SegmentProfile:
    """One segment: size, feature statistics in real units, centroid z-scores, name and reason."""

    segment: int
    size: int
    share: float
    stats: dict[str, dict[str, float]]  # feature -> {mean, median, min, max}
    z: dict[str, float]  # feature -> centroid z-score in the clustering space
    top_values: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)  # median r_score, f_score, m_score
    rfm: dict[str, int] = field(default_factory=dict)  # RFM segment -> its customers in it
    rfm_name: str = ""  # the RFM segment its name stands for ("" when none)
    name: str = ""
    reason: str = ""

    @property
    def rfm_agreement(self) -> int:
        """How many of its customers are, by their own RFM scores, what its name says."""
        return self.rfm.get(self.rfm_name, 0)


def _role_z(profile: SegmentProfile, roles: Mapping[str, str], role: str) -> float | None:
    column = roles.get(role)
    return profile.z.get(column) if column else None


def archetypes(profile: SegmentProfile, roles: Mapping[str, str]) -> list[str]:
    """Names that fit a segment, best first, from its recency, frequency and spend z-scores.

    `r` is positive for recent buyers (low Recency), `f` for frequent ones, `m` for high spenders.
    """
    recency = _role_z(profile, roles, "recency")
    r = -recency if recency is not None else None
    f = _role_z(profile, roles, "frequency")
    m = _role_z(profile, roles, "spend")
    t = TRAIT_THRESHOLD
    if r is f is m is None:
        return [_trait_name(profile)]
    rules = [
        ("Champions", r is not None and f is not None and m is not None and min(r, f, m) > t),
        ("At risk", r is not None and r < -t and max(f or 0, m or 0) > t),
        ("Hibernating", r is not None and r < -t and (f or 0) <= t and (m or 0) <= t),
        ("New customers", r is not None and r > t and f is not None and f < -t),
        ("Big spenders", m is not None and m > 2 * t),
        ("Loyal", f is not None and f > t),
        ("Promising", r is not None and r > t),
        ("Bargain hunters", m is not None and m < -2 * t),
        ("Occasional buyers", f is not None and f < -t),
        ("Fading", r is not None and r < -t),
    ]
    return [name for name, matches in rules if matches] + ["Regulars"]


def _trait_name(profile: SegmentProfile) -> str:
    ranked = sorted(profile.z.items(), key=lambda item: -abs(item[1]))
    words = [
        f"{'High' if z > 0 else 'Low'} {feature}"
        for feature, z in ranked[:2]
        if abs(z) >= TRAIT_THRESHOLD
    ]
    return " & ".join(words) or "Average"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:,.1f}"


def _trait(feature: str, z: float, median: float, role: str | None) -> str:
    """One trait in real units, by its median: 'median 2 orders (-0.7σ)'."""
    if role == "recency":
        return f"last order {_number(median)} days ago"
    if role == "frequency":
        return f"median {_number(median)} {'order' if median == 1 else 'orders'} ({z:+.1f}σ)"
    if role == "spend":
        return f"median spend {_number(median)} ({z:+.1f}σ)"
    if role == "age":
        return f"median age {_number(median)}"
    return f"{feature} {z:+.1f}σ (median {_number(median)})"


def reason(profile: SegmentProfile, roles: Mapping[str, str], lead: str | None = None) -> str:
    """The two or three strongest traits by their medians, e.g. 'median spend 1,480 (+1.4σ),
    last order 9 days ago'; `lead` (what tells look-alikes apart) comes first whatever its
    strength."""
    role_of = {column: role for role, column in roles.items()}
    ranked = sorted(profile.z.items(), key=lambda item: (item[0] != lead, -abs(item[1])))
    parts: list[str] = []
    for feature, z in ranked[:3]:
        if abs(z) < TRAIT_THRESHOLD and parts:
            break
        parts.append(_trait(feature, z, profile.stats[feature]["median"], role_of.get(feature)))
    if profile.scores:
        parts.append(
            "median RFM scores "
            + "-".join(str(profile.scores[s]) for s in ("r_score", "f_score", "m_score"))
        )
    if all(abs(z) < TRAIT_THRESHOLD for z in profile.z.values()):
        return "close to the average customer: " + ", ".join(parts)
    return ", ".join(parts)


def order_key(spend_column: str | None, features: Sequence[str]):
    """Segments are numbered by descending mean spend (or first feature), then size: stable runs."""
    column = spend_column if spend_column in features else features[0]
    return lambda p: (-p.stats[column]["mean"], -p.size)


def plurality(rfm: Mapping[str, int]) -> str:
    """The RFM segment most of a segment's customers fall in (a tie goes to the better one, in
    SEGMENTS order): no other name holds for more of its customers."""
    return max(SEGMENTS, key=lambda s: (rfm.get(s, 0), -SEGMENTS.index(s)))


def named_rfm_segment(name: str) -> str:
    """The RFM segment a name stands for ('Hibernating (older)' -> 'Hibernating'), or '' for a
    name of the analyst's own."""
    base = name.split(" (")[0]
    return base if base in SEGMENTS else ""


def separating_feature(members: Sequence[SegmentProfile]) -> str:
    """The feature whose centre z-scores lie furthest apart across look-alike segments: in the
    model's space, the one KMeans split them by (spend only when spend does it)."""

    def spread(feature: str) -> float:
        return max(p.z[feature] for p in members) - min(p.z[feature] for p in members)

    return max(members[0].z, key=spread)


def _tell_apart(name: str, members: list[SegmentProfile], roles: Mapping[str, str]) -> None:
    """Name segments that share an RFM segment by where they sit on their separating feature,
    lowest median first ('Hibernating (younger)', '... (older)'); the middle ones of four or
    more are numbered ('... (mid age 1)'), the last resort. Each reason leads with it."""
    feature = separating_feature(members)
    role = {column: role for role, column in roles.items()}.get(feature, "")
    low, mid, high = TIERS.get(role, (f"low {feature}", f"mid {feature}", f"high {feature}"))
    members.sort(key=lambda p: (p.stats[feature]["median"], p.z[feature], p.segment))
    last = len(members) - 1
    for index, profile in enumerate(members):
        tier = low if index == 0 else high if index == last else mid
        numbered = last > 2 and 0 < index < last
        profile.name = f"{name} ({tier} {index})" if numbered else f"{name} ({tier})"
        profile.reason = reason(profile, roles, lead=feature)


def _name_by_rfm(profiles: list[SegmentProfile], roles: Mapping[str, str]) -> None:
    """Each segment gets the RFM segment of the plurality of its customers, not the grid cell of
    its average scores: one 77,183 order pulls a mean, not a plurality, and a name that most of
    a segment's customers contradict misleads whoever mails them. Look-alikes are told apart by
    the feature that separates them."""
    groups: dict[str, list[SegmentProfile]] = {}
    for profile in profiles:
        profile.rfm_name = plurality(profile.rfm)
        groups.setdefault(profile.rfm_name, []).append(profile)
    for name, members in groups.items():
        if len(members) > 1:
            _tell_apart(name, members, roles)
        else:
            members[0].name = name
            members[0].reason = reason(members[0], roles)


def name_segments(profiles: list[SegmentProfile], roles: Mapping[str, str]) -> None:
    """Give each profile a unique name and a reason.

    With RFM scores, by the RFM segment most of its customers are in. Otherwise segments pick in
    order of size, each taking its best-fitting name not yet taken; when every fitting name is
    taken the best one gets a number ('Loyal 2').
    """
    if profiles and all(p.rfm for p in profiles):
        _name_by_rfm(profiles, roles)
        return
    taken: set[str] = set()
    for profile in sorted(profiles, key=lambda p: (-p.size, p.segment)):
        options = archetypes(profile, roles)
        name = next((n for n in options if n not in taken), None)
        number = 2
        while name is None:
            name = f"{options[0]} {number}" if f"{options[0]} {number}" not in taken else None
            number += 1
        taken.add(name)
        profile.name = name
        profile.reason = reason(profile, roles)


def agreement_text(segment: Mapping[str, Any]) -> str | None:
    """'2,311 of 2,879 customers (80%) are Champions by their own RFM scores', for a row of
    segments.csv: how far its name holds. None without RFM scores, or for a name of the
    analyst's own."""
    rfm_name = segment.get("rfm_name")
    if not isinstance(rfm_name, str) or not rfm_name:
        return None
    agreeing, size = int(segment["rfm_agreement"]), int(segment["size"])
    return (
        f"{agreeing:,} of {size:,} customers ({agreeing / size:.0%}) are {rfm_name} by their "
        "own RFM scores"
    )


def profiles_frame(profiles: list[SegmentProfile], features: Sequence[str]) -> pd.DataFrame:
    """The segments table (segments.csv): one row per segment, flat columns per feature."""
    rows = []
    for p in profiles:
        row: dict[str, object] = {
            "segment": p.segment,
            "name": p.name,
            "reason": p.reason,
            "size": p.size,
            "share": p.share,
        }
        for feature in features:
            for stat in ("mean", "median", "min", "max"):
                row[f"{feature}_{stat}"] = p.stats[feature][stat]
            row[f"{feature}_z"] = p.z[feature]
        for score, median in p.scores.items():
            row[f"{score}_median"] = median
        if p.rfm:
            row["rfm_name"] = p.rfm_name or None
            row["rfm_agreement"] = p.rfm_agreement if p.rfm_name else None
            row["rfm_agreement_share"] = p.rfm_agreement / p.size if p.rfm_name else None
        for column, values in p.top_values.items():
            total = sum(count for _, count in values) or 1
            row[f"{column}_top"] = ", ".join(
                f"{value} {count / total:.0%}" for value, count in values[:3]
            )
        rows.append(row)
    return pd.DataFrame(rows)
