"""Benchmarks of blobgate against baselines measured in the same run.

``python -m bench run`` starts its own local stack (S3, token issuer, registry), drives
load from a separate process (wrk with a Lua script that rotates through many tokens
and digests, curl for byte streams) and writes a markdown table of the results, always
as ratios against baselines measured moments before or after. See BENCHMARKS.md.
"""
