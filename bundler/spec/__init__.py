"""bundle.toml: the model (model.py), its loading and validation with file:line (load.py), and the
format-preserving edits the commands make (edit.py). Imports nothing of the rest of bundler but
its errors."""
