"""The client's resources, one module each: ``runs``, ``workspace``, ``admin`` (keys), ``tenants``,
``approvals`` and ``threads`` (``steering``, which also gives ``runs`` its pause / resume / steps / fork),
``webhooks``, ``schedules``.

To add one (say ``client.threads``): write ``threads.py`` with a builder per call — a function that
returns a ``Call`` (or a generator, for a call of several requests) — and a ``Threads(Resource[TransportT])``
class that lists them (``get = endpoint(get_thread)``), then add one line to ``_Resources.__init__`` in
``conclave/sdk/client.py``. Both clients have it, sync and async, with the builder's signature.
"""

from .admin import Admin
from .runs import Runs
from .schedules import Schedules
from .steering import Approvals, Threads
from .tenants import Tenants
from .webhooks import Webhooks
from .workspace import Workspace

__all__ = ["Admin", "Approvals", "Runs", "Schedules", "Tenants", "Threads", "Webhooks", "Workspace"]
