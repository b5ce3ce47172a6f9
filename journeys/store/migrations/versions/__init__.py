"""The store's revisions (a package, so that `pip install .` ships them)."""
