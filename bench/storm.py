"""``python -m bench storm``: placeholder replaced below."""
TOKENS = 500
