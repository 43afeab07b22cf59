"""One immutable snapshot of the configuration, ready for a connection to use.

The values of the configuration (the daemon's and the policy), the engine's
limits, and the DNS ``Lookup`` the checks ask, seen only through the
engine's Protocol. Building one from a configuration wires in the DNS
client, its cache and the metrics: that is service.make_settings(), so that
this module, and what imports it, loads none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from spf_milter.config.model import DaemonConfig
from spf_milter.policy import Policy
from spf_milter.spf import Limits, Lookup

WAIT_MARGIN: Final = 5.0  # seconds a callback waits beyond a check's time limit


@dataclass(frozen=True, slots=True)
class Settings:
    """One immutable snapshot of the configuration, ready to use."""

    config: DaemonConfig
    policy: Policy
    lookup: Lookup
    limits: Limits
    cached_lookup: Lookup | None = None  # answers from the cache or NotCached

    @property
    def wait_limit(self) -> float:
        """Seconds a callback waits for a check: its time limit and a margin."""
        return self.limits.time_limit + WAIT_MARGIN
