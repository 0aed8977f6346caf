"""Reporting: per-step funnels, provider health and the ops overview."""
