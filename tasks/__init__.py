"""Built-in tasks. Each registers through the `vlbench.tasks` entry-point group."""
