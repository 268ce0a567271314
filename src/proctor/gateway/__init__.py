"""Gateways: listeners that speak a client protocol, decide every request, record it.

``postgres`` is the first (docs/gateway.md).
"""
