"""Sequences: the campaign files marketers edit, their send windows and timing, and live edits."""
