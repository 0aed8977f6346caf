"""Tracking: what comes back: provider events, inbound texts, and the pages behind a
message's links."""
