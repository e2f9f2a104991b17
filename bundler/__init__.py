"""bundler: build relocatable, offline bundles of Python services run by supervisor."""

__version__ = "0.1.0"
DISTRIBUTION = "offline-bundler"  # its name on PyPI ("bundler" is another project's); the command is bundler
