"""Tracking: what comes back: provider events, inbound texts, the pages behind a
message's links, person events from other systems (person_events.py), and answers to
check-in questions (answers.py)."""
