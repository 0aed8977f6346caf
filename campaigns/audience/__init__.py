"""Audience: subscribers, consent, suppression, eligibility, sign-up and imports."""
