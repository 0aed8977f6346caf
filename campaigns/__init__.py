"""The domain: sequences, subscribers, consent, scheduling and engagement.

Nothing here imports Celery or HTTP code: tasks and routes call these functions with a
session and a clock, so every rule is tested without a broker.
"""
