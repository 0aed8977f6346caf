"""The domain: plain functions on a session and a clock, tested without a broker.

Nothing here imports Celery, HTTP code, `workers`, `web` or `settings` (a test checks it).

    sequences/  what a campaign is: the YAML file (campaign), the deployed set (registry),
                send windows and due times (windows, timing), live edits (revisions, diffing)
    content/    templates rendered in a sandbox (rendering), provider-ready messages
                (composing, batching), and the marketer's checks (lint, preview, testsend)
    audience/   people: subscribers, consent, suppression, opt_outs, eligibility (may this
                message still go?), signup and CSV imports
    delivery/   the engine: enrollment, claiming due steps, sending, outcomes of provider
                calls, the reaper, unconfirmed messages, channel pauses, the scheduler's tick,
                and the provider interface (providers)
    tracking/   signed links, provider events (events), inbound texts (inbound), and the
                pages behind a message's links (portal)
    care/       the contact-request queue and telling the care team
    reporting/  funnels, provider health, the ops overview and outbox listings

    states.py   every state machine as an enum      reasons.py  reason codes with their text
    models.py   tables                              db.py       engines, sessions, transactions
    clock.py    clocks (tests pin time)             migrate.py  Alembic from code
    redact.py   masking addresses in logs
"""
