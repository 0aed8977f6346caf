"""Reporting: per-step funnels and goals, provider health and the ops overview."""
