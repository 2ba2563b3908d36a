"""The package's version, in a module of its own so that any layer can read it (``workbench.__version__``
re-exports it; no module inside workbench imports the package's top level)."""

__version__ = "0.1.0"
