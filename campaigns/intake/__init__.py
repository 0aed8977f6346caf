"""Intake: how people join: the sign-up form and its double opt-in, JOIN by text, the
confirmation mails, and CSV imports (of people, and of person events: event_imports.py)."""
