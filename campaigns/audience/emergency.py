"""Which emergency number a person should be told to call.

Every lesson tells the reader what to dial in an emergency, and a person in Madrid,
Kolkata or Sydney who reads "call 911" is told the wrong thing. Their country comes from
the best evidence we hold, in order: the phone number's region (where the SIM is), the
time zone they chose, and last the service's default country. The number comes from
`emergency_numbers.csv`, kept beside this module and checked row by row against
libphonenumber's short-number data in the tests.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import phonenumbers
import pytz

from campaigns.models import Subscriber

TABLE = Path(__file__).with_name("emergency_numbers.csv")
# 3GPP TS 22.101 makes every mobile phone with a SIM treat 112 as an emergency call in any
# country, so it is the safe answer for a country the table does not list.
ANYWHERE = "112"


@functools.cache
def numbers() -> dict[str, str]:
    with TABLE.open(encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {r["country"].strip().upper(): r["number"].strip() for r in rows}


@functools.cache
def _zone_countries() -> dict[str, str]:
    # zone.tab, as pytz ships it, names one country per zone.
    return {zone: cc for cc, zones in pytz.country_timezones.items() for zone in zones}


def country_of_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return None
    # "001" is a non-geographic number (satellite, global services): no country at all.
    return region if region and region not in ("ZZ", "001") else None


def country_of_zone(zone: str | None) -> str | None:
    return _zone_countries().get(zone or "")


def country_of(subscriber: Subscriber) -> str | None:
    """The person's country, or None when nothing we hold says."""
    return country_of_phone(subscriber.phone) or country_of_zone(subscriber.timezone)


def emergency_number(country: str | None, default_country: str) -> str:
    table = numbers()
    country = (country or default_country).upper()
    return table.get(country, ANYWHERE)
