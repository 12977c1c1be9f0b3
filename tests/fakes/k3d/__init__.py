"""The fake ``k3d`` executable (``k3d`` in this folder) and a harness to put it on PATH."""
