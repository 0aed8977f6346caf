"""Rates for reports: a share that is None, not zero, when nothing was counted."""

from __future__ import annotations


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
