"""bundler: build relocatable, offline bundles of Python services run by supervisor."""

__version__ = "0.1.0"
