"""The PostgreSQL gateway: ``sql`` (statement analysis with pglast) so far."""
