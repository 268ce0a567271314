"""Gateways: listeners that speak a client protocol, decide every request, record it.

``postgres`` is the first: ``sql`` reads statements with PostgreSQL's own parser (pglast);
the protocol codec, the session and the proxy follow (issue #4).
"""
