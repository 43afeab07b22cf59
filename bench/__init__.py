"""Benchmarks of spf-milter: the engine, the milter under load, hostile zones.

A package, so that its modules import each other by one name each
(``from bench import procstat``) and run as modules from the repository
root: ``.venv/bin/python -m bench.engine``. See bench/README.md.
"""
