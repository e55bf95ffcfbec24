"""automtl.losses."""
