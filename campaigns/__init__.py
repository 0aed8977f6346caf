"""The domain: plain functions on a session and a clock, tested without a broker.

Nothing here imports Celery, HTTP code, `workers`, `web` or `settings`, and the parts
are layered: each uses only the ones below it (import-linter contracts in pyproject.toml,
run by `make lint` and tests/test_boundaries.py).

    care/       the contact-request queue (asking, listing, marking) and telling the team
    reporting/  funnels, provider health, the ops overview and outbox listings
    intake/     how people join: sign-up with double opt-in, JOIN by text, confirmation
                mails, CSV imports (imports reads and checks, import_batches writes)
      ----
    tracking/   what comes back: provider events (events), inbound texts (inbound), and
                the pages behind a message's links (portal; a test message's: previews)
    delivery/   the engine: enrollment, claiming due steps, composing and sending them,
                outcomes of provider calls, the reaper, unconfirmed messages, channel
                pauses, the scheduler's tick, test sends, and the provider interface
      ----
    content/    templates rendered in a sandbox (rendering) and the marketer's checks
                (lint, preview, readability, sms_text)
    sequences/  what a campaign is: the YAML file (campaign), the deployed set (registry),
                send windows and due times (windows, timing), live edits (revisions, diffing)
    audience/   people: subscribers, consent, suppression, opt_outs, eligibility (may this
                message still go?)

    Under all of them: states.py (every state machine as an enum), reasons.py (reason
    codes with their text), models.py, db.py, clock.py, links.py (signed link tokens),
    redact.py (masking in logs), migrate.py (Alembic from code).
"""
