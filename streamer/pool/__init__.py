"""The render plane: workers per device (local processes or Ray actors), EDF queues and batching
in the workers, placement by predicted finish, cancel, capacity and admission in the front.

`front/` runs in the web process, `worker/` in the render worker; `base.py` (the contract),
`wire.py`, `channel.py` and `costs.py` are what both sides share."""
