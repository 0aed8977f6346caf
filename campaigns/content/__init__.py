"""Content: templates rendered in a sandbox, and the marketer's checks on them (lint,
preview, reading level, GSM-7 and segments)."""
