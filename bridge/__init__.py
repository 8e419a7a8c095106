"""bridge: turns GitHub App push webhooks into Chroma Sync invocations."""

__version__ = "0.1.0"
