"""Continuous backup: Litestream 0.5, run and watched by the mount daemon, reading through the mount.

hoodydb does not ship a backup engine of its own. The daemon finds the WAL databases of its tree
(`discovery`), writes Litestream's configuration for them (`litestream_config`), runs Litestream as
a supervised child (`supervisor`) and asks it how far the replica has come (`status`, through
Litestream's control socket, `litestream_socket`). `restore` wraps `litestream restore`.
"""
