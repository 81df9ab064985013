"""Backups: one archive holding a consistent copy of the database, the uploaded covers and the
leads kept in the spool (quarantined ones too), with a manifest of row counts, checksums and
the schema revision.

`flask backup create PATH` writes it; `flask backup restore PATH` puts it back, all or nothing.
"""
