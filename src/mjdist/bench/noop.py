"""The function of the launch benchmark's bare torchrunx launch, alone in a module so that its workers import
nothing else."""


def noop() -> None:
    """Do nothing."""
