"""SpamAssassin's SPF plugin (Debian's ``spamassassin`` 4.0.1) as a reader.

``spf_rules(messages, config_dir)`` runs one Perl process that loads
SpamAssassin once per mode and checks every message in each mode, returning
the SPF rules each hit::

    hits = spf_rules([path1, path2], config_dir)
    hits[path1, Mode(newest=True, trusted_hop=False)]   # {"SPF_FAIL", ...}

The configuration is private (``config_dir``, written by
``write_config``): the Check and SPF plugins, Debian's own SPF rules
(/usr/share/spamassassin/25_spf.cf) and README.md's "Downstream filters"
settings, ``trusted_networks``/``internal_networks`` naming the MTA that ran
the milter. The DNS is switched off (``dns_available no``), so every rule
that hits was read from our fields: SpamAssassin cannot check SPF itself.
The ``trusted_hop`` mode puts one more ``Received:`` field on top, from a
trusted internal relay, as when SpamAssassin runs on a later hop.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PERL: Final = "/usr/bin/perl"
RULES: Final = Path("/usr/share/spamassassin")
SPF_RULES: Final = RULES / "25_spf.cf"
NOT_INSTALLED: Final = (
    f"SpamAssassin is not installed ({SPF_RULES}); scripts/test installs it"
)
RUN_TIMEOUT: Final = 300.0
RELAY: Final = "198.51.100.25"  # the MTA, as the next hop's Received: names it
TRUSTED_HOP: Final = (
    f"Received: from mta.test.example (mta.test.example [{RELAY}])\n"
    "\tby filter.test.example (Postfix) with ESMTPS id 4fQx2H0Z1Vz9sWq\n"
    "\tfor <user@dest.test>; Fri, 4 Dec 2026 12:00:00 +0000 (UTC)\n"
)

# Reads the settings' directory, then file names on stdin; prints one line
# per message and mode: "<newest> <hop> <file>\t<rule>,<rule>...".
SCRIPT: Final = r"""
use strict;
use warnings;
use Mail::SpamAssassin;
my ($rules, $hop) = @ARGV;
my @files = map { chomp; $_ } <STDIN>;
$| = 1;
for my $newest (0, 1) {
  my $sa = Mail::SpamAssassin->new({
    rules_filename => $rules,
    site_rules_filename => "$rules/site",
    userprefs_filename => "$rules/user_prefs",
    dont_copy_prefs => 1,
    local_tests_only => 0,
    post_config_text => "use_newest_received_spf_header $newest\n",
  });
  $sa->compile_now(0);
  for my $file (@files) {
    open(my $fh, '<', $file) or die "$file: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    for my $with_hop (0, 1) {
      my $msg = $sa->parse(($with_hop ? $hop : '') . $text);
      my $status = $sa->check($msg);
      my @hits = grep { /SPF/ } split /,/, $status->get_names_of_tests_hit();
      print "$newest $with_hop $file\t", join(',', sort @hits), "\n";
      $status->finish;
      $msg->finish;
    }
  }
}
"""


@dataclass(frozen=True, slots=True)
class Mode:
    """One way of running SpamAssassin on a delivered message."""

    newest: bool  # use_newest_received_spf_header 1
    trusted_hop: bool  # a trusted relay's Received: above the MTA's

    def __str__(self) -> str:
        return f"newest={int(self.newest)},hop={int(self.trusted_hop)}"


MODES: Final = tuple(Mode(n, h) for n in (False, True) for h in (False, True))


def spamassassin_available() -> bool:
    """Tell whether SpamAssassin and its SPF rules are installed."""
    return SPF_RULES.is_file() and shutil.which(PERL) is not None


def write_config(config_dir: Path, mta: str = RELAY) -> None:
    """Write the private configuration; ``mta`` is the trusted, internal MTA."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "site").mkdir(exist_ok=True)
    (config_dir / "user_prefs").write_text("")
    (config_dir / "00_plugins.cf").write_text(
        "loadplugin Mail::SpamAssassin::Plugin::Check\n"
        "loadplugin Mail::SpamAssassin::Plugin::SPF\n"
    )
    (config_dir / "25_spf.cf").write_text(SPF_RULES.read_text())
    (config_dir / "local.cf").write_text(
        "util_rb_tld test example\n"  # no sa-update here: name the test TLDs
        f"trusted_networks {mta}\n"
        f"internal_networks {mta}\n"
        "dns_available no\n"
    )


def spf_rules(
    messages: Sequence[Path], config_dir: Path
) -> dict[tuple[Path, Mode], frozenset[str]]:
    """Return the SPF rules each message hits, in each of the MODES."""
    done = subprocess.run(
        [PERL, "-e", SCRIPT, str(config_dir), TRUSTED_HOP],
        input="".join(f"{path}\n" for path in messages),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"spamassassin exited {done.returncode}:\n{done.stderr}")
    hits: dict[tuple[Path, Mode], frozenset[str]] = {}
    for line in done.stdout.splitlines():
        head, _, rules = line.partition("\t")
        newest, hop, path = head.split(" ", 2)
        mode = Mode(newest == "1", hop == "1")
        hits[Path(path), mode] = frozenset(filter(None, rules.split(",")))
    return hits
