"""Who a client is, proved by something other than a Proctor-managed password.

- ``oidc``  signed tokens (JWTs) from an OpenID Connect provider: the header read, the
  signature and claims checked against a key from the provider's JWKS, the principal made from
  the claims (sans-IO; :class:`KeySet` is the key cache and its refetch rules as plain state).
- ``jwks``  the I/O around it: fetching the JWKS (urllib in a worker thread, or a file) and
  :class:`~proctor.identity.jwks.JwksClient`, the one-fetch-at-a-time cache a gateway awaits.

Local users with SCRAM verifiers stay with the PostgreSQL gateway (``gateway/postgres/scram``).
"""
