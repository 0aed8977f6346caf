"""Sequences: the campaign files marketers edit, their send windows and timing, check-in
questions (questions.py), and live edits."""
