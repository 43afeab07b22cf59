"""The RFC 7208 SPF engine: check_host() over an injected DNS Lookup.

The engine knows nothing of milters, configuration files or dnspython: the
caller gives it a ``Lookup`` (and, to keep parsed records between checks,
a ``Memo``) and gets a ``CheckResult`` back.
"""

from spf_milter.spf.evaluate import check_host
from spf_milter.spf.limits import DEFAULT_EXPLANATION, Limits
from spf_milter.spf.lookup import DnsError, DnsServerFailure, DnsTimeout, Lookup
from spf_milter.spf.memo import Memo
from spf_milter.spf.result import CheckResult, Identity, SpfResult
from spf_milter.spf.trace import Trace

__all__ = [
    "DEFAULT_EXPLANATION",
    "CheckResult",
    "DnsError",
    "DnsServerFailure",
    "DnsTimeout",
    "Identity",
    "Limits",
    "Lookup",
    "Memo",
    "SpfResult",
    "Trace",
    "check_host",
]
