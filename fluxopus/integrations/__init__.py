"""Third-party integrations: OAuth providers for connections, the Authlib client, token sealing."""
