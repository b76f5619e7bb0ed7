"""Segment profiles and names an analyst can act on, in RFM vocabulary.

With Recency, Frequency and Spend a segment is named by the cell of the standard R×F grid its
customers' average R and F scores fall in (segmentation.rfm), so KMeans segments and RFM
segments read together; without them, by its strongest traits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from segmentation.rfm import grid_segment

TRAIT_THRESHOLD = 0.3  # |z| below this is "about average" and not worth mentioning


@dataclass
class SegmentProfile:
    """One segment: size, feature statistics in real units, centroid z-scores, name and reason."""

    segment: int
    size: int
    share: float
    stats: dict[str, dict[str, float]]  # feature -> {mean, median, min, max}
    z: dict[str, float]  # feature -> centroid z-score in the clustering space
    top_values: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # mean r_score, f_score, m_score
    name: str = ""
    reason: str = ""


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


def reason(profile: SegmentProfile, roles: Mapping[str, str]) -> str:
    """The two or three strongest traits in words, e.g. 'spend +1.4σ, last order 9 days ago'."""
    role_of = {column: role for role, column in roles.items()}
    ranked = sorted(profile.z.items(), key=lambda item: -abs(item[1]))
    parts: list[str] = []
    for feature, z in ranked[:3]:
        if abs(z) < TRAIT_THRESHOLD and parts:
            break
        median = profile.stats[feature]["median"]
        role = role_of.get(feature)
        if role == "recency":
            parts.append(f"last order {_number(median)} days ago")
        elif role == "frequency":
            orders = "order" if median == 1 else "orders"
            parts.append(f"{_number(median)} {orders} ({z:+.1f}σ)")
        elif role == "spend":
            parts.append(f"spend {z:+.1f}σ (median {_number(median)})")
        elif role == "age":
            parts.append(f"median age {_number(median)}")
        else:
            parts.append(f"{feature} {z:+.1f}σ (median {_number(median)})")
    if profile.scores:
        parts.append(
            "average RFM scores "
            + "-".join(f"{profile.scores[s]:.1f}" for s in ("r_score", "f_score", "m_score"))
        )
    if all(abs(z) < TRAIT_THRESHOLD for z in profile.z.values()):
        return "close to the average customer: " + ", ".join(parts)
    return ", ".join(parts)


def order_key(spend_column: str | None, features: Sequence[str]):
    """Segments are numbered by descending mean spend (or first feature), then size: stable runs."""
    column = spend_column if spend_column in features else features[0]
    return lambda p: (-p.stats[column]["mean"], -p.size)


def _nearest_score(mean: float) -> int:
    return min(5, max(1, int(mean + 0.5)))


def _name_by_rfm(profiles: list[SegmentProfile]) -> None:
    """The R×F grid's name of each segment's average scores; segments sharing a cell are told
    apart by their average M score ('Hibernating (high spend)', '... (low spend)')."""
    cells: dict[str, list[SegmentProfile]] = {}
    for profile in profiles:
        r, f = (_nearest_score(profile.scores[s]) for s in ("r_score", "f_score"))
        cells.setdefault(grid_segment(r, f), []).append(profile)
    for name, members in cells.items():
        members.sort(key=lambda p: (-p.scores["m_score"], p.segment))
        tiers = ["high spend", *["mid spend"] * (len(members) - 2), "low spend"]
        for number, (profile, tier) in enumerate(zip(members, tiers, strict=False), start=1):
            if len(members) == 1:
                profile.name = name
            elif len(members) > 3 and tier == "mid spend":
                profile.name = f"{name} (mid spend {number - 1})"
            else:
                profile.name = f"{name} ({tier})"


def name_segments(profiles: list[SegmentProfile], roles: Mapping[str, str]) -> None:
    """Give each profile a unique name and a reason.

    With RFM scores, by the R×F grid. Otherwise segments pick in order of size, each taking its
    best-fitting name not yet taken; when every fitting name is taken the best one gets a
    number ('Loyal 2').
    """
    if profiles and all(p.scores for p in profiles):
        _name_by_rfm(profiles)
        for profile in profiles:
            profile.reason = reason(profile, roles)
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
        for score, mean in p.scores.items():
            row[f"{score}_mean"] = mean
        for column, values in p.top_values.items():
            total = sum(count for _, count in values) or 1
            row[f"{column}_top"] = ", ".join(
                f"{value} {count / total:.0%}" for value, count in values[:3]
            )
        rows.append(row)
    return pd.DataFrame(rows)
