"""Which k to suggest from a sweep's figures, and why, in one sentence.

The silhouette finds natural groups when there are some: it peaks at their number. Real
customers mostly form a continuum instead, and then the silhouette is highest at k = 2 and
falls as k grows; suggesting k = 2 there gives a marketer two segments, which is no
segmentation. So:

1. A k is usable when no segment holds under 1% of customers and, when other seeds were tried,
   its segments come back (mean adjusted Rand index at least 0.8).
2. Among usable k, the most detailed one whose silhouette is within 0.02 of the best is
   suggested, unless that is the smallest k of the range;
3. then the smallest k is suggested only when its silhouette shows well-separated groups (0.9
   or more: this squared-Euclidean silhouette's equivalent of 0.7 for the usual one, Kaufman and
   Rousseeuw's mark of a strong structure);
4. otherwise the elbow of the sum of squares: the most detailed k before more segments stop
   paying off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TINY_SHARE = 0.01  # a segment under 1% of customers is flagged
CLOSE = 0.02  # silhouettes this close to the best count as just as good
STRONG = 0.9  # a squared-Euclidean silhouette this high means well-separated groups
STABLE = 0.8  # mean adjusted Rand index across seeds for a k to count as stable
OPINION_LABELS = {
    "elbow": "the elbow of the sum of squares",
    "silhouette": "the best silhouette",
    "calinski_harabasz": "Calinski–Harabasz",
}


def knee(ks: list[int], within: list[float]) -> int:
    """The elbow of the sum-of-squares curve: the k farthest below the straight line joining
    the first and last points, both axes scaled to 0..1 (the 'Kneedle' rule)."""
    if len(ks) < 3:
        return ks[0]
    x = (np.array(ks, float) - ks[0]) / (ks[-1] - ks[0])
    span = within[0] - within[-1]
    if span <= 0:
        return ks[0]
    y = (np.array(within, float) - within[-1]) / span
    distance = (1 - x) - y  # chord from (0, 1) to (1, 0) minus the curve
    return ks[int(np.argmax(distance))]


def _usable(table: pd.DataFrame) -> pd.DataFrame:
    """The k without a tiny segment and, when seeds were compared, with stable segments; every
    k when none is."""
    fine = ~table["tiny_segment"]
    if "ari_mean" in table:
        fine &= ~(table["ari_mean"] < STABLE)  # not measured (NaN) is not unstable
    return table[fine] if fine.any() else table


def _opinions(table: pd.DataFrame, usable: pd.DataFrame) -> dict[str, int]:
    opinions = {"elbow": knee(list(table["k"]), list(table["within_ss"]))}
    scored = usable.dropna(subset=["silhouette"])
    if len(scored):
        opinions["silhouette"] = int(scored.loc[scored["silhouette"].idxmax(), "k"])
    ch = usable.dropna(subset=["calinski_harabasz"])
    if len(ch):
        opinions["calinski_harabasz"] = int(ch.loc[ch["calinski_harabasz"].idxmax(), "k"])
    return opinions


def _choice(table: pd.DataFrame, usable: pd.DataFrame, opinions: dict[str, int]) -> tuple[int, str]:
    """The suggested k and the sentence that says why."""
    scored = usable.dropna(subset=["silhouette"]).set_index("k")["silhouette"]
    elbow = opinions["elbow"]
    if not len(scored):
        return elbow, f"no silhouette could be computed, so the elbow k={elbow} is suggested"
    best_k, best = int(scored.idxmax()), float(scored.max())
    detailed = int(max(scored[scored >= best - CLOSE].index))
    if detailed > int(table["k"].min()) or best >= STRONG:
        if detailed == best_k:
            return detailed, f"k={detailed} has the best silhouette ({best:.3f})"
        return detailed, (
            f"k={detailed} is the most detailed k whose silhouette ({scored[detailed]:.3f}) is "
            f"within {CLOSE} of the best ({best:.3f} at k={best_k})"
        )
    near_elbow = [k for k in usable["k"] if k <= elbow]
    k = int(max(near_elbow)) if near_elbow else best_k
    return k, (
        f"k={k} is the elbow of the sum of squares: the silhouette is highest at k={best_k} "
        f"({best:.3f}) and falls as k grows, the mark of customers who form a continuum rather "
        f"than well-separated groups (that takes {STRONG}), so the suggestion is the most "
        "detailed k before more segments stop paying off"
    )


def suggest(table: pd.DataFrame) -> tuple[int, str, dict[str, int]]:
    """Suggested k, the reason in words, and each measure's own pick (elbow, best silhouette,
    Calinski–Harabasz) as second opinions."""
    usable = _usable(table)
    opinions = _opinions(table, usable)
    k, why = _choice(table, usable, opinions)
    parts = [why]
    differ = {name: value for name, value in opinions.items() if value != k}
    if differ:
        parts.append(
            " and ".join(f"{OPINION_LABELS[a]} points to k={v}" for a, v in differ.items())
            + ": compare those segmentations before choosing"
        )
    elif len(opinions) > 1:
        parts.append("every measure agrees")
    tiny = list(table.loc[table["tiny_segment"], "k"])
    if tiny:
        parts.append(
            f"k={', '.join(map(str, tiny))} produce a segment under {TINY_SHARE:.0%} of customers"
        )
    if "ari_mean" in table:
        shaky = list(table.loc[table["ari_mean"] < STABLE, "k"])
        if shaky:
            parts.append(f"the segments of k={', '.join(map(str, shaky))} change with the seed")
    return k, "; ".join(parts) + ".", opinions
