"""Installing the agent on a box as a systemd service.

``install.sh`` (next to this file) creates the ``edge-inspector`` system
user, a virtual environment under ``/opt/edge-inspector``, copies and
verifies a model bundle, and installs the unit, the environment file and the
config from ``systemd/`` in the repository. Run it again to upgrade; it keeps
an existing config and environment file. ``--dry-run`` prints the commands
without running them.
"""
