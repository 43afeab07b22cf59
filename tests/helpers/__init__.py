"""The helpers the tests share: test doubles, servers and clients on loopback.

tests/conftest.py puts tests/ on sys.path, so a test imports them as
``from helpers.milterdaemon import MilterDaemon``. What is here:

- dnszone: the zone model that both DNS test doubles answer from;
- dnsserver: a real authoritative DNS server on loopback serving a Zone;
- fakelookup: the engine's Lookup protocol answered in memory from a Zone;
- pyspfzone: pyspf's DNS queries answered from a Zone (differential tests);
- milterdaemon: the real ``spf-milter run`` daemon as a subprocess;
- milterwire, milterclient: the milter protocol's codec and a client of it;
- harness: the milter callbacks driven through pymilter's TestCtx;
- headerparse: strict parsers of the header fields the milter writes;
- growth: the ratio of running times, to assert linear growth.
- lifecycle: Managed, the with-block start and close the servers and
  processes above (and tests/mta's) share.
"""
