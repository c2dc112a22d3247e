"""Data helpers the stages share: reading sources, intake, validation, images, shards and their
conversion, the per-image caches (reuse), drift, Data Docs."""
