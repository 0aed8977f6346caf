"""HTTP: provider webhooks now; the subscriber-facing routes come with their own issue.
Routes stay thin: check the request, then call plain functions in `campaigns/`."""
