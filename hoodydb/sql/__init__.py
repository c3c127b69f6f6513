"""The SQL core of the HTTP API: apsw connections, path confinement, the transaction executor, the KV store.

Nothing here knows about HTTP. Errors are `SqlApiError`s carrying a machine-readable code; the API
layer maps codes to statuses in one place.
"""
