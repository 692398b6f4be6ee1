"""The render pool's front, in the web process: placement and dispatch, job handles, admission,
the local worker processes and the Ray actors it drives, the cluster report."""
