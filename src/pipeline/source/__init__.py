"""The source side: everything gather needs to read a point-in-time snapshot, and the tools that fill a history.

- moments.py: the source's one time format and the parsing of `as_of` (no SQL).
- url.py: the source URL, parsed once, and the redaction of its passwords.
- history.py: the history contract (tables, the point-in-time query, the contract check).
- readers.py: reading the snapshot query through ADBC or SQLAlchemy, scrambled on request.
- validate.py: every value read checked against the adapter's declared types and domains.
- ingest.py: appending a plain table to a history; copy.py: moving declared tables to another database.
"""
