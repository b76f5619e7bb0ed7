"""Errors a user can cause, carrying messages written for an analyst."""

from __future__ import annotations


class SegmentationError(Exception):
    """Base class: the message is shown to the analyst as it is, never a stack trace."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class InputError(SegmentationError):
    """The uploaded data cannot be segmented as it is (missing column, too few rows, ...)."""


class EngineError(SegmentationError):
    """Spark or Java is unavailable or failed; the hint says what to install or change."""


class JobCancelled(SegmentationError):
    """The analyst cancelled the job while it ran."""
