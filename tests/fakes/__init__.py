"""Loopback fakes of Twilio and SendGrid that the real SDKs are pointed at.

See server.py for the scripting API and twilio.py / sendgrid.py for the exact
SDK wiring.
"""

from .sendgrid import FakeSendGrid, sendgrid_error
from .server import FakeServer, Recorded, Response
from .twilio import FakeTwilio, twilio_error

__all__ = [
    "FakeSendGrid",
    "FakeServer",
    "FakeTwilio",
    "Recorded",
    "Response",
    "sendgrid_error",
    "twilio_error",
]
