"""Built-in matchers. Each registers through the `vlbench.matchers` entry-point group."""
