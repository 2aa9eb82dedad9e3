"""Subcommands of the ``jaxcomp`` CLI (one module each)."""
