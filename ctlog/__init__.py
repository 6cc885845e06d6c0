"""A standalone RFC 6962 certificate-transparency log (``tnca ctlog serve``).

It imports nothing of ``ca``: the authority talks to it only over HTTP, as it would to any log.
See docs/architecture.md ("ctlog/") for the modules.
"""
