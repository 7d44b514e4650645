"""The load test (`scripts/loadtest`) and the real-process harness it shares
with the tests: PostgreSQL databases, Redis and chatserver processes on
loopback, and the host ATS's API client. Nothing here imports `tests` or
pytest, so the load test runs from a checkout without the test suite's
fixtures; the tests import these modules instead of copies of their own.
"""
