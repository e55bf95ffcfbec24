"""automtl.models."""
