"""Reporting: per-step funnels, goals and check-in answers, provider health and the ops
overview."""
