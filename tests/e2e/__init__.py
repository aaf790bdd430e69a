"""End-to-end tests: real registry, S3, token issuer and container clients through blobgate."""
