"""The DNS client: the engine's ``Lookup`` over our own stub resolver.

resolver.py answers the engine's questions (DnsLookup), query.py sends one
question and reads its answer (dnspython messages; with resolver.py the only
importer of dnspython), cache.py keeps answers for every connection. Its
servers and cache bounds come from spf_milter.config.model.

Named dnsclient, not dns: a package of ours called ``dns`` would hide
dnspython's wherever milter/spf_milter itself is on sys.path, and its
modules would read as dnspython's (``dns.resolver``). Nothing is
re-exported here, so that importing the cache loads no dnspython.
"""
