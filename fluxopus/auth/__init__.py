"""JWT verification and the development signing key."""
