"""Scoped API tokens: what a token may do (`scope`), where tokens are kept (`store`), and how a
request's token is recognised (`verifier`)."""
