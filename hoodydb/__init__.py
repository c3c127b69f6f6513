"""hoodydb: many processes, one SQLite file, zero "database is locked"."""

__version__ = "0.1.0"
