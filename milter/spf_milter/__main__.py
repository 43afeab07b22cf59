"""Run the command line interface: ``python -m spf_milter``."""

from spf_milter.cli import main

raise SystemExit(main())
