"""The test suite. Imported before any test module and before fluxopus itself."""

import os

# Cheap argon2 parameters for every password the tests hash, in this process and the servers it
# starts (fluxopus/auth/passwords.py); the default ones cost ~130 ms of CPU per sign-up or sign-in.
os.environ["FLUXOPUS_INSECURE_FAST_PASSWORD_HASHES"] = "1"
