"""The PostgreSQL gateway.

``protocol`` is the sans-IO codec of protocol 3.0 (bytes in, typed messages out, messages the
gateway builds); ``sql`` reads statements with PostgreSQL's own parser (pglast). The session
state machine, authentication and the asyncio proxy follow (issue #4).
"""
