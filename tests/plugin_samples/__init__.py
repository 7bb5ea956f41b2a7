"""Plugin modules used by the tests (loaded with ``--plugin plugin_samples.NAME`` or a space's ``plugins:``)."""
