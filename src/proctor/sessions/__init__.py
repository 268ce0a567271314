"""Continuous authorization: the registry of live sessions and what re-decides them.

``registry`` holds every logged-in session of a gateway behind a small protocol, re-decides
them when policies, principals or grants change, and has those no longer allowed cut.
"""
