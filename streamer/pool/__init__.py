"""The render plane: workers per device (local processes or Ray actors), EDF queues and batching
in the workers, placement by predicted finish, cancel, capacity and admission in the front."""
