"""Subcommands of the ``landscape`` CLI, one module per group; see :mod:`landscape.commands.main`."""
