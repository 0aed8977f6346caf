"""Content: rendering templates in a sandbox, composing provider-ready messages, and the
marketer's checks (lint, preview, test-send)."""
