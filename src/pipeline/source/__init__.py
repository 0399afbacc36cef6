"""The source side: everything gather needs to read a point-in-time snapshot, and the tools that fill a history.

- moments.py: the source's one time format and the parsing of `as_of` (no SQL).
- url.py: the source URL, parsed once, and the redaction of its passwords.
- history.py: the history contract: its names, a history table's declaration, the point-in-time query.
- contract.py: the check that a source keeps that contract, before every snapshot query.
- readers.py: reading the snapshot query through ADBC or SQLAlchemy; scramble.py: `make verify`'s reversed order.
- validate.py: every value read checked against the adapter's declared types and domains.
- ingest.py: appending a plain table to a history; copy.py: moving declared tables to another database.
"""
