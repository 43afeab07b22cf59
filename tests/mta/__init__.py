"""Real MTAs for end-to-end tests: a private Postfix, an SMTP client, a test milter.

Modules:

* ``postfix``: ``PostfixInstance``, a private Postfix on loopback ports with its
  own configuration, queue and data directories under a fresh work dir in /tmp.
* ``postfixconf``: renders that instance's main.cf, master.cf and SASL files.
* ``delivery``: the file sink's deliveries (``out/<queue id>.eml``), parsed and raw.
* ``smtp``: ``send()``, an smtplib-based client that records every reply and
  never raises on an SMTP rejection.
* ``milterprocess``: run a milter as a subprocess and wait for its socket.
* ``echo_milter``: a tiny pymilter milter (a script), used to prove the fixtures.
* ``echo``: start the echo milter and read its journal of callbacks.
* ``loopback``: free ports, and "is it listening" without connecting.
* ``wait``: polling with a deadline.

Everything here talks to loopback addresses only, and every wait is bounded.
"""
