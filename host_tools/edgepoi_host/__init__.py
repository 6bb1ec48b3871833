"""CPython-only host tools for edgepoi: CLI, edge node, simulator, console, provisioning."""
