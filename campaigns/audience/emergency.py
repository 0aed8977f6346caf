"""Which emergency number a person should be told to call.

Every lesson tells the reader what to dial in an emergency, and a person in Madrid,
Kolkata or Sydney who reads "call 911" is told the wrong thing. Their country comes from
the best evidence we hold, in order: the phone number's region (where the SIM is), the
time zone they chose (old names too: browsers still report "Asia/Calcutta"), and last the
service's default country. A time zone that names no country ("UTC") says the person is
somewhere we do not know: they get 112, not the default country's number. The number comes from
`emergency_numbers.csv`, kept beside this module and checked row by row against
libphonenumber's short-number data in the tests.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import phonenumbers
from babel.core import get_global

from campaigns.models import Subscriber

TABLE = Path(__file__).with_name("emergency_numbers.csv")
# 3GPP TS 22.101 makes every mobile phone with a SIM treat 112 as an emergency call in any
# country, so it is the safe answer for a country the table does not list.
ANYWHERE = "112"
UNKNOWN = "ZZ"  # somewhere, not known where (CLDR's code for an unknown region)


@functools.cache
def numbers() -> dict[str, str]:
    with TABLE.open(encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {r["country"].strip().upper(): r["number"].strip() for r in rows}


@functools.cache
def _zones() -> tuple[dict[str, str], dict[str, str]]:
    # CLDR (through Babel): old zone names to current ones, and each zone's country.
    return dict(get_global("zone_aliases")), dict(get_global("zone_territories"))


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
    aliases, territories = _zones()
    country = territories.get(aliases.get(zone or "", zone or ""))
    return country if country and country not in ("ZZ", "001") else None


def country_of(subscriber: Subscriber) -> str | None:
    """The person's country; `UNKNOWN` when their time zone names none; None when we hold
    nothing about where they are (then the service's default country applies)."""
    country = country_of_phone(subscriber.phone) or country_of_zone(subscriber.timezone)
    if country is None and subscriber.timezone:
        return UNKNOWN
    return country


def emergency_number(country: str | None, default_country: str) -> str:
    table = numbers()
    country = (country or default_country).upper()
    return table.get(country, ANYWHERE)
