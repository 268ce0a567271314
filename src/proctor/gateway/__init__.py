"""Gateways: listeners that speak a client protocol, decide every request, record it.

``postgres`` is the first: its protocol codec and its SQL analysis exist; the session, the
authentication and the proxy follow (issue #4).
"""
