"""Audience: the people and what they agreed to: subscribers, consent, suppression,
opting out and back in, and eligibility (may this message still go to them?)."""
