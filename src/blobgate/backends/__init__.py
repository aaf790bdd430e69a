"""Storage backends: where blob bytes live, and how clients are sent to them."""
