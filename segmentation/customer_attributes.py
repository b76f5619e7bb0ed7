"""A second table of customer attributes (Age, Region, …) joined to customers built from an order log."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segmentation.columns import detect_mapping
from segmentation.errors import InputError
from segmentation.order_report import AttributeJoin
from segmentation.reading import customer_id_expr, quoted_column


def join_attributes(
    customers: DataFrame,
    attributes: DataFrame,
    id_column: str | None = None,
    missing_ids: Sequence[str] = (),
) -> tuple[DataFrame, AttributeJoin]:
    """Add a second table's columns (Age, Region, …) to the customers by customer id.

    A left join: every customer stays, with empty attributes when the second table lacks them.
    Repeated ids in the attribute table keep one row, so no customer is counted twice.
    Returns the joined table and a report of missing and unmatched ids. The analyst's
    `missing_ids` are no id here either: a till account's row is not an unmatched customer.
    """
    own_id = detect_mapping(customers.columns).get("customer_id", "CustomerID")
    if id_column is None:
        id_column = detect_mapping(attributes.columns).get("customer_id")
        if id_column is None:
            raise InputError(
                "The attribute table has no customer id column that could be recognised "
                f"(it has: {', '.join(attributes.columns[:12])}).",
                hint="Name it CustomerID, or choose its id column.",
            )
    elif id_column not in attributes.columns:
        raise InputError(f"The attribute table has no column '{id_column}'.")

    taken = {c.lower() for c in customers.columns}
    renamed, picked = {}, []
    for column in attributes.columns:
        if column == id_column:
            continue
        name = column
        while name.lower() in taken:
            name = f"{name}_attr"
        if name != column:
            renamed[column] = name
        taken.add(name.lower())
        picked.append(F.first(quoted_column(column), ignorenulls=True).alias(name))
    key = "__attribute_id"
    by_id = attributes.groupBy(customer_id_expr(attributes, id_column, missing_ids).alias(key)).agg(
        F.count(F.lit(1)).alias("__rows"), *picked
    )
    joined = customers.join(
        by_id.where(F.col(key).isNotNull()).drop("__rows"),
        customer_id_expr(customers, own_id) == F.col(key),
        "left",
    ).drop(key)

    own = customers.select(customer_id_expr(customers, own_id).alias(key), F.lit(1).alias("c"))
    theirs = by_id.select(key, "__rows", F.lit(1).alias("a"))
    matched = own.join(theirs, key, "full_outer")
    has_own, has_theirs = F.col("c").isNotNull(), F.col("a").isNotNull()
    with_id = F.col(key).isNotNull()
    counts = matched.agg(
        F.count_if(has_own).alias("customers"),
        F.count_if(has_own & has_theirs & with_id).alias("matched"),
        F.count_if(has_own & ~(has_theirs & with_id)).alias("customers_missing"),
        F.count_if(~has_own & has_theirs & with_id).alias("unmatched_ids"),
        F.count_if(has_theirs & with_id & (F.col("__rows") > 1)).alias("duplicate_ids"),
        F.coalesce(F.sum(F.when(has_theirs & ~with_id, F.col("__rows"))), F.lit(0)).alias(
            "rows_without_id"
        ),
    ).collect()[0]

    report = AttributeJoin(
        id_column=id_column,
        columns=[renamed.get(c, c) for c in attributes.columns if c != id_column],
        renamed=renamed,
        **{k: int(v) for k, v in counts.asDict().items()},
    )
    return joined, report
