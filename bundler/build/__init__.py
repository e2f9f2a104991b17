"""The build machine's side: plan a bundle from its spec (plan.py), make it (pipeline.py: the
interpreters, their packages, the code, the configs, the records) and pack it, or a patch against
an earlier build (patch.py). Nothing here runs inside a bundle."""
