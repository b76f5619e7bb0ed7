"""What turning an order log into customers did (the order-log origin of a customer table): the
counts the manifest keeps and the sentences the analyst reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from segmentation.wording import counted


@dataclass(frozen=True)
class AttributeJoin:
    """What joining a customer attributes table did: which ids matched, which did not."""

    id_column: str
    columns: list[str]
    renamed: dict[str, str]
    customers: int
    matched: int
    customers_missing: int
    unmatched_ids: int
    duplicate_ids: int
    rows_without_id: int

    def messages(self) -> list[str]:
        """What the analyst should know about the join before trusting the attributes."""
        lines = []
        if self.customers_missing:
            lines.append(
                f"{counted(self.customers_missing, 'customer')} of {self.customers:,} "
                f"{_has(self.customers_missing)} no row in the attribute table; their "
                "attributes are empty (numeric ones are filled with the median)."
            )
        if self.unmatched_ids:
            lines.append(
                f"{counted(self.unmatched_ids, 'customer id')} in the attribute table "
                f"{'match' if self.unmatched_ids != 1 else 'matches'} no customer in the order "
                "log; those rows are not used."
            )
        if self.duplicate_ids:
            lines.append(
                f"{counted(self.duplicate_ids, 'customer id')} appear more than once in the "
                "attribute table; one row of each was used."
            )
        if self.rows_without_id:
            lines.append(
                f"{counted(self.rows_without_id, 'attribute row')} {_has(self.rows_without_id)} "
                "no customer id and were ignored."
            )
        for old, new in self.renamed.items():
            lines.append(f"The attribute column '{old}' is called '{new}' to keep it apart.")
        return lines


@dataclass(frozen=True)
class DominantId:
    """One customer id holding an implausible share of an order log: probably a till, guest or
    placeholder account rather than a customer (order_log.DOMINANT_SHARE says when)."""

    customer_id: str
    lines: int
    line_share: float  # of the lines with a customer id
    spend_share: float  # of their net spend
    times_next: float | None  # its lines or spend over the next customer's (None: no other buys)
    basis: str  # what it dominates: "order lines" or "spend"

    def message(self) -> str:
        """The warning, with how to treat the id as missing."""
        times = (
            f", {self.times_next:,.0f} times the next customer's {self.basis}"
            if self.times_next
            else ""
        )
        return (
            f"Customer id '{self.customer_id}' has {counted(self.lines, 'order line')} "
            f"({_percent(self.line_share)} of the lines) and {_percent(self.spend_share)} of the "
            f"spend{times}: it probably stands for orders without a customer (a "
            "till, guest or placeholder account). If so, treat it as missing (Upload page: "
            f"'Ids to treat as missing'; command line: --missing-ids {self.customer_id})."
        )


@dataclass
class TransactionReport:
    """What building the customer table did to the order lines, for the analyst and the manifest.

    Customers whose only lines in the log are returns or cancellations are left out and
    counted (`returns_only_customers`): with no purchase there is no recency, frequency or
    order value to segment on, and their negative spend would form a segment of its own.
    """

    rows_in: int
    rows_without_customer: int  # lines whose id is missing or a placeholder (missing_ids)
    unparseable_dates: int
    unparseable_examples: list[str]
    unreadable_amounts: int
    return_lines: int
    return_value: float
    cancelled_invoices: int
    returns_only_customers: int
    returns_only_value: float
    customers: int
    first_date: date | None
    last_date: date | None
    reference_date: date | None
    date_format: str
    roles: dict[str, str]
    frequency_basis: str  # "orders" (distinct order ids) or "days" (distinct purchase days)
    cancellations_by_prefix: bool = True
    notes: list[str] = field(default_factory=list)
    detected: bool = False  # the input was recognised as an order log, not declared one
    attributes: AttributeJoin | None = None  # a customer attributes table joined in
    # Of rows_without_customer: lines per id as written ('' when empty, '(blank)', 'N/A', …),
    # and their share of the log's net spend.
    missing_ids: dict[str, int] = field(default_factory=dict)
    missing_id_spend_share: float = 0.0
    dominant_id: DominantId | None = None  # one id holding an implausible share of the log

    def messages(self) -> list[str]:
        """Warnings and notes an analyst should read before trusting the customer table."""
        return self.repairs() + self.warnings() + self._context()

    def warnings(self) -> list[str]:
        """What asks for the analyst's action: an id that is probably no customer."""
        return [self.dominant_id.message()] if self.dominant_id else []

    def repairs(self) -> list[str]:
        """The order lines (and customers) building the customer table left out or subtracted."""
        lines = [self._missing_id_message()] if self.rows_without_customer else []
        if self.unparseable_dates:
            examples = ", ".join(self.unparseable_examples) or "empty values"
            column = self.roles.get("date", "date")
            lines.append(
                f"{counted(self.unparseable_dates, 'order line')} {_has(self.unparseable_dates)} "
                f"no readable date in '{column}' as {self.date_format} dates (e.g. {examples}); "
                f"{'they were' if self.unparseable_dates != 1 else 'it was'} left out. "
                "If most dates look like this, choose the date format yourself."
            )
        if self.unreadable_amounts:
            where = self.roles.get("amount") or (
                f"{self.roles.get('quantity')} × {self.roles.get('unit_price')}"
            )
            lines.append(
                f"{counted(self.unreadable_amounts, 'order line')} {_has(self.unreadable_amounts)} "
                f"no number in '{where}'; {_were(self.unreadable_amounts, 'they were', 'it was')} "
                "left out."
            )
        if self.return_lines:
            cancelled = (
                f", including {counted(self.cancelled_invoices, 'cancelled invoice')}"
                if self.cancelled_invoices
                else ""
            )
            lines.append(
                f"{counted(self.return_lines, 'return line')}{cancelled}, worth "
                f"{_money(self.return_value)} in total, {_were(self.return_lines)} subtracted "
                "from the customers' spend."
            )
        if self.returns_only_customers:
            lines.append(
                f"{counted(self.returns_only_customers, 'customer')} only returned or cancelled "
                f"goods in this period (worth {_money(self.returns_only_value)}) and "
                f"{_were(self.returns_only_customers)} left out: with no purchase there is no "
                "recency, frequency or order value to segment on."
            )
        return lines

    def _context(self) -> list[str]:
        """How the customer table was built, for reading it."""
        lines = []
        if self.frequency_basis == "days":
            lines.append(
                "The log has no order id column, so Frequency counts the distinct days a customer "
                "bought something."
            )
        if not self.cancellations_by_prefix:
            lines.append(
                f"Most order ids in '{self.roles.get('order_id')}' start with 'C', so that prefix "
                "was not read as a cancellation; only negative quantities or amounts count as "
                "returns."
            )
        lines.extend(self.notes)
        if self.reference_date:
            lines.append(
                f"Recency and Tenure are days to {self.reference_date.isoformat()}; the orders run "
                f"from {_iso(self.first_date)} to {_iso(self.last_date)}."
            )
        if self.attributes:
            lines.extend(self.attributes.messages())
        return lines

    def _missing_id_message(self) -> str:
        """Lines left out for want of a real customer id, naming the placeholders found."""
        n = self.rows_without_customer
        written = {token: count for token, count in self.missing_ids.items() if token}
        if not written:
            return f"{counted(n, 'order line')} {_has(n)} no customer id (guest orders?) and {_were(n)} left out."
        named = ", ".join(
            f"'{token}' {count:,}" if token else f"empty {count:,}"
            for token, count in self.missing_ids.items()
        )
        spend = (
            f" ({_percent(self.missing_id_spend_share)} of spend)"
            if self.missing_id_spend_share > 0
            else ""
        )
        return (
            f"{counted(n, 'order line')}{spend} had no real customer id ({named}) and "
            f"{_were(n)} left out."
        )


def _percent(share: float) -> str:
    """14%, or 0.4% below one percent."""
    return f"{share:.0%}" if share >= 0.01 or share == 0 else f"{share:.1%}"


def _has(n: int) -> str:
    return "have" if n != 1 else "has"


def _were(n: int, plural: str = "were", singular: str = "was") -> str:
    return plural if n != 1 else singular


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _iso(day: date | None) -> str:
    return day.isoformat() if day else "–"
