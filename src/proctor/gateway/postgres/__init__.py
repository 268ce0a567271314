"""The PostgreSQL gateway (see docs/gateway.md).

Sans-IO core, each module one step of a connection:

- ``protocol``  codec of protocol 3.0: bytes in, typed messages out, messages built
- ``sql``       statements read with PostgreSQL's own parser (pglast)
- ``scram``     SCRAM-SHA-256 both ways (clients to Proctor, Proctor to the server), md5
- ``commands``  the I/O steps the core asks for (read, send, connect, record, wait)
- ``startup``   from the first packet to ReadyForQuery: TLS, login (SCRAM or a token),
  connect decision
- ``session``   each client message: decide, record, forward or refuse (sentinel)
- ``replies``   each server message: match it to its request, obligations, outcomes

Asyncio shell: ``proxy`` (one Connection per client: drives the generators, two pumps) and
``server`` (listeners, session registry, admin socket).
"""
