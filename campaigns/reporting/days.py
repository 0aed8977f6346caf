"""Days and ISO weeks for reports that count over time (campaigns.reporting.trends,
campaigns.reporting.cohorts): a moment's UTC day as text from SQL, grouped there, and
the Monday of a day's ISO week, folded in Python (SQLite has no ISO week)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, literal_column
from sqlalchemy.orm import Session


def day_of(session: Session, column):
    """The UTC day of a moment, as 'YYYY-MM-DD'. The format is a literal, not a bound
    parameter: PostgreSQL would see the select's and the GROUP BY's copies as different
    expressions."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"))
    return func.substr(column, 1, 10)  # SQLite keeps a UTC moment as 'YYYY-MM-DD HH:MM:SS'


def to_day(text: str) -> date:
    return date.fromisoformat(text[:10])


def week_of(day: date) -> date:
    """The Monday that starts the day's ISO week."""
    return day - timedelta(days=day.weekday())
