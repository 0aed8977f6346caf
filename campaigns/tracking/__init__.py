"""Tracking: signed links, provider and engagement events, inbound texts, and the subscriber's link pages."""
