"""Changing what runs: checking and publishing a campaign's files, drafts edited in the
workspace, and the impact of an edit on the people enrolled."""
