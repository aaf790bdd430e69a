"""Hardening suite: authorization matrix, input grammar, faults, load, shutdown, secrets."""
