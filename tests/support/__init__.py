"""Shared helpers for blobgate's tests: token signing and a registry stand-in."""
