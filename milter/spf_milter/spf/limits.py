"""The processing limits of a check and its default explanation (RFC 7208 §4.6.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from spf_milter.spf.errors import PermError
from spf_milter.spf.macro import parse_macro_string

# RFC 7208 §4.6.4 limits, and §4.6.4's advice on an overall time limit.
MAX_DNS_TERMS: Final = 10
MAX_VOID_LOOKUPS: Final = 2
MAX_MX_NAMES: Final = 10
MAX_PTR_NAMES: Final = 10
TIME_LIMIT: Final = 20.0
# Our own bound on a check's work, not the RFC's: the records of all the
# answers one check reads (TXT, MX, addresses, PTR). Each answer holds at
# most a few hundred (the resolver refuses larger ones), and the §4.6.4
# limits allow some 120 queries, so without it one check could make the
# event loop parse tens of thousands of records.
MAX_RECORDS: Final = 1000
# Explanations end up in SMTP replies and header fields: keep them short.
MAX_EXPLANATION_LENGTH: Final = 256
DEFAULT_EXPLANATION: Final = "SPF: %{o} does not designate %{c} as a permitted sender"


@dataclass(frozen=True, slots=True)
class Limits:
    """The processing limits and the default explanation of a check."""

    max_dns_terms: int = MAX_DNS_TERMS
    max_void_lookups: int = MAX_VOID_LOOKUPS
    max_mx_names: int = MAX_MX_NAMES
    max_ptr_names: int = MAX_PTR_NAMES
    time_limit: float = TIME_LIMIT
    max_records: int = MAX_RECORDS
    default_explanation: str = DEFAULT_EXPLANATION
    max_explanation_length: int = MAX_EXPLANATION_LENGTH

    def __post_init__(self) -> None:
        try:
            parse_macro_string(self.default_explanation, explain=True)
        except PermError as error:
            raise ValueError(f"default explanation: {error.problem}") from None


DEFAULT_LIMITS: Final = Limits()
