"""Policies kept outside the sandbank package, as a user's would be (tests/test_hosts.py)."""
