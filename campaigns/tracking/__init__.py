"""Tracking: signed links, provider and engagement events, inbound texts, and the pages
behind a message's links."""
