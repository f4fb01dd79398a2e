"""The web console: pages and ES modules served by the API itself at ``/ui``.

The console is one more client of the public HTTP API: every figure it shows comes from a route
that the SDK and the CLI can call too, so it holds no logic of its own that the API lacks. Its
files ship in the Python package and are served as they are (no build step, no CDN), so a laptop
without a network and a cluster behind a firewall see the same console.
"""

from conclave.api.console.mount import CONSOLE_PATH, SECURITY_HEADERS, STATIC_DIR, ConsoleFiles, mount_console

__all__ = ["CONSOLE_PATH", "SECURITY_HEADERS", "STATIC_DIR", "ConsoleFiles", "mount_console"]
