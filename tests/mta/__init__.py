"""Real MTAs for end-to-end tests: a private Postfix and a private Sendmail, an
SMTP client, a test milter.

Modules:

* ``common``: ``Mta``, the protocol both instances follow, so one scenario
  suite runs on either; work dirs other users can walk.
* ``postfix``: ``PostfixInstance``, a private Postfix on loopback ports with its
  own configuration, queue and data directories under a fresh work dir in /tmp.
* ``postfixconf``: renders that instance's main.cf, master.cf and SASL files.
* ``sendmail``: ``SendmailInstance``, a private ``sendmail -bD`` on loopback
  ports inside its own UTS and mount namespaces.
* ``sendmailconf``: renders its .mc (and, with m4, .cf), sandbox and SASL files.
* ``sendmaildist``: Sendmail's binaries, fetched with ``apt-get download``.
* ``syslogsink``: a /dev/log stand-in writing sendmail's log to a file.
* ``wiring``: the milter lines of README.md's "Wiring it into the MTA", which
  both instances use as they are, socket aside.
* ``delivery``: the file sinks' deliveries (``out/<queue id>.eml``), parsed and raw.
* ``smtp``: ``send()``, an smtplib-based client that records every reply and
  never raises on an SMTP rejection.
* ``milterprocess``: run a milter as a subprocess and wait for its socket.
* ``echo_milter``: a tiny pymilter milter (a script), used to prove the fixtures.
* ``echo``: start the echo milter and read its journal of callbacks.
* ``loopback``: free ports, and "is it listening" without connecting.
* ``wait``: polling with a deadline.
* ``spamassassin``: SpamAssassin's SPF plugin reading delivered messages, with
  a private configuration and no DNS.
* ``opendmarc``: a private OpenDMARC (second milter) in its own mount
  namespace, its resolv.conf pointing at the test DNS server.
* ``replay``: replay a delivered message to a milter over the milter protocol.
* ``stamp``, ``stamp_milter``: a test milter that adds fields before or after
  ours, to see where Postfix shows them.

Everything here talks to loopback addresses only, and every wait is bounded.
"""
