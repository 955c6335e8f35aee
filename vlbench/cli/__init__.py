"""The `vlbench` command line: one module per subcommand, heavy imports inside the commands."""
