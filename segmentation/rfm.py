"""Classic RFM beside KMeans: Recency, Frequency and Monetary scores from 1 to 5, and the
segment of the R×F grid that marketers already use.

A score is 1 plus the number of quintile cut points (the 20th, 40th, 60th and 80th percentiles
of the customers' known values, from the sketch that also gives the quartiles: rank error about
0.05%, no extra pass) that the value lies above; R counts the other way, so that R = 5 is the
most recent. A missing value, filled with the median, scores as the median. Customers with equal
values always get equal scores, so a score can hold more or less than a fifth of the customers:
when half of a shop's customers bought once, they all get F = 1 and no customer gets F = 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

from pyspark.sql import Column
from pyspark.sql import functions as F

ROLES = ("recency", "frequency", "spend")
SCORE_COLUMNS = ("r_score", "f_score", "m_score", "rfm_segment")

# The standard R×F grid: for each R score (1..5) the segment of each F score (1..5).
GRID = {
    1: ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"),
    2: ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"),
    3: ("About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"),
    4: ("Promising", "Potential loyalists", "Potential loyalists", "Loyal", "Loyal"),
    5: ("New customers", "Potential loyalists", "Potential loyalists", "Champions", "Champions"),
}
# Best first: the order tables and charts list the segments in.
SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential loyalists",
    "New customers",
    "Promising",
    "Need attention",
    "About to sleep",
    "Can't lose them",
    "At risk",
    "Hibernating",
)


def grid_segment(r: int, f: int) -> str:
    """The segment of an R score and an F score (1..5 each)."""
    return GRID[r][f - 1]


@overload
def _score(role: str, above: int) -> int: ...
@overload
def _score(role: str, above: Column) -> Column: ...
def _score(role: str, above: Column | int) -> Column | int:
    """A score from the number of cut points its value lies above (a Spark column or a
    number): R counts down from 5, so that recent buyers score high; F and M count up from 1."""
    return 5 - above if role == "recency" else 1 + above


@dataclass(frozen=True)
class RfmScores:
    """The cut points of one customer table and the expressions that score its customers."""

    values: dict[str, str]  # role -> column holding the feature in real units
    cuts: dict[str, list[float]]  # role -> its four cut points

    def _above(self, role: str) -> Column:
        column = F.col(self.values[role])
        return sum(((column > F.lit(cut)).cast("int") for cut in self.cuts[role]), F.lit(0))

    def scores(self) -> dict[str, Column]:
        """Each customer's r_score, f_score, m_score (1..5) and rfm_segment."""
        r, f, m = (_score(role, self._above(role)).cast("int") for role in ROLES)
        cells = F.array(*[F.lit(grid_segment(rr, ff)) for rr in range(1, 6) for ff in range(1, 6)])
        segment = F.element_at(cells, (r - 1) * 5 + f)
        return {"r_score": r, "f_score": f, "m_score": m, "rfm_segment": segment}

    def score(self, role: str, value: float) -> int:
        """The score of one value in real units, by the same rule as a customer's: a segment's
        median scores are the scores of its medians, as scores never fall as values rise (and
        R never rises)."""
        return _score(role, sum(value > cut for cut in self.cuts[role]))

    def to_dict(self) -> dict:
        """For the manifest: the cut points and the rule, so every score can be checked."""
        return {
            "cuts": self.cuts,
            "rule": "score = 1 + number of the 20/40/60/80th percentiles (of the known values, "
            "rank error about 0.05%) the value lies above; R = 6 - that score, so 5 is the most "
            "recent; equal values get equal scores",
        }
