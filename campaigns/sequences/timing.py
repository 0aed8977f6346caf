"""When a step is due: the scheduling policy from settings, the text hours, and the
window a step may go out in, in the subscriber's own time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from campaigns.models import Subscriber
from campaigns.sequences.campaign import Campaign, DefinitionError, Step
from campaigns.sequences.caps import Cap
from campaigns.sequences.windows import Window, next_allowed
from campaigns.states import Channel

# Texts only between 08:00 and 21:00 local time (TCPA); settings may narrow it.
TEXT_HOURS = Window.every_day(8, 21)


@dataclass(frozen=True)
class Policy:
    """The scheduling rules that come from settings."""

    default_timezone: str = "America/New_York"
    sms_window: Window = TEXT_HOURS
    claim_batch_size: int = 500
    requeue_after: timedelta = timedelta(seconds=30)
    # Order per person (campaigns.delivery.ordering): a cursor whose previous step is still
    # on its way is read again at most this long after the moment that step can move.
    order_recheck: timedelta = timedelta(minutes=1)
    # The scheduler's resolution (one tick): a step whose exact due time, counted from when
    # the previous step went out, is no further ahead than this is claimed now rather
    # than read a second time.
    order_slack: timedelta = timedelta(seconds=5)
    # No provider call starts in the last seconds of a window: the chunk's calls must land
    # before it closes (21:00:00 sharp for texts), not milliseconds after.
    call_margin: timedelta = timedelta(0)  # settings: SEND_WINDOW_MARGIN_SECONDS (5)
    # Messages per person across campaigns (campaigns.delivery.frequency_cap); none unless
    # set: settings give FREQUENCY_CAP_PER_DAY / _PER_WEEK, a campaign file may override.
    frequency_cap: Cap = Cap()

    @classmethod
    def from_settings(cls, s) -> Policy:
        return cls(
            default_timezone=s.default_timezone,
            sms_window=Window.every_day(s.sms_earliest_hour, s.sms_latest_hour),
            claim_batch_size=s.claim_batch_size,
            requeue_after=timedelta(seconds=s.requeue_after_seconds),
            order_slack=timedelta(seconds=s.tick_seconds),
            call_margin=timedelta(seconds=s.send_window_margin_seconds),
            frequency_cap=Cap(s.frequency_cap_per_day or 0, s.frequency_cap_per_week or 0),
        )

    def cap_for(self, campaign: Campaign) -> Cap:
        """The frequency cap `campaign`'s steps are judged by: the settings', overridden
        by the campaign file's `frequency_cap`."""
        return self.frequency_cap.over(campaign.frequency_cap)

    def zone(self, subscriber: Subscriber) -> ZoneInfo:
        return ZoneInfo(subscriber.timezone or self.default_timezone)


def step_window(campaign: Campaign, channels, policy: Policy) -> Window:
    """The campaign window, narrowed to the text hours when the step may text."""
    window = campaign.window
    if Channel.SMS in channels:
        narrowed = window.intersect(policy.sms_window)
        if narrowed is None:
            raise DefinitionError(
                [
                    (
                        f"{campaign.key}: send_window {window.describe()} never overlaps the text "
                        f"hours {policy.sms_window.describe()}"
                    )
                ]
            )
        window = narrowed
    return window


def due_time(
    base: datetime,
    campaign: Campaign,
    step: Step,
    subscriber: Subscriber,
    channels: list[str],
    policy: Policy,
) -> datetime:
    """When `step` is due for someone whose previous step went out at `base`: after the
    step's delay, at the next minute its window allows on the channels they can get."""
    wanted = step.channels_for(channels)
    return next_allowed(
        base + step.delay, step_window(campaign, wanted, policy), policy.zone(subscriber)
    )


def due_at_once(
    base: datetime,
    campaign: Campaign,
    step: Step,
    subscriber: Subscriber,
    channels: list[str],
    policy: Policy,
) -> datetime:
    """When `step` may go for someone if it goes without its delay: a wait whose event
    has come (`wait_for`) is over, the step goes at `base` or its window's next opening."""
    wanted = step.channels_for(channels)
    return next_allowed(base, step_window(campaign, wanted, policy), policy.zone(subscriber))
