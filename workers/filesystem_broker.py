"""kombu's file-system transport, with each message written whole before it appears.

kombu's own `_put` creates the message file in the queue folder and then writes into
it, while a consumer takes any file it finds there (it renames it away and reads it; the
writer's lock does not stop a rename). A consumer polling often enough catches a file
still empty, fails to parse it and the worker stops ("Unrecoverable error:
JSONDecodeError"); the demo, which polls every 50 ms, met it within minutes. Here a
message is written under a name no consumer looks for (not ending in `.msg`) and renamed
into place, so a file a consumer sees is a whole message. Files are read exactly as
kombu's transport reads them, so processes on either transport share one queue folder.

Use: register the alias, then broker_url = "drip-filesystem://" (workers/demo_worker.py).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "drip-filesystem"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # kombu's own name, so consumers order and pick messages exactly as before.
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        aside = os.path.join(self.data_folder_out, f"writing-{uuid.uuid4()}")
        try:
            with open(aside, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(aside, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> str:
    """Make "drip-filesystem://" name this transport in this process (and its forks)."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
    return f"{ALIAS}://"
