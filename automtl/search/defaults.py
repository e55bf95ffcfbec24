"""Storage defaults and small vocabularies shared by the library and the CLI (no optuna,
sqlalchemy or torch here, so `automtl --help` can show them without importing the search)."""

DEFAULT_STORAGE = "sqlite:///automtl.db"
# Environment variable holding a storage URL (so a password need not appear on a command line);
# also how the launcher hands the URL to its worker processes.
STORAGE_ENV = "AUTOMTL_STORAGE"

# Pruner kinds of a study (`PrunerConfig.kind`, `automtl search --pruner`).
PRUNER_KINDS = ("pareto", "none")

__all__ = ["DEFAULT_STORAGE", "PRUNER_KINDS", "STORAGE_ENV"]
