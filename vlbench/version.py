"""vlbench's version, importable where the package itself is shadowed (a folder named vlbench in the
working directory makes `import vlbench` a namespace package without it)."""

__version__ = "0.2.0"
