"""One module per CLI command: ``register(subparsers, name)`` and ``run(args) -> int``."""
