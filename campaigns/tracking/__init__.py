"""Tracking: what comes back: provider events, inbound texts, the pages behind a
message's links, and person events from other systems (person_events.py)."""
