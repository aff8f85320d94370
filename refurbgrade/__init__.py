"""The `refurbgrade` console script: one entry point whose subcommands live in their owning packages."""
