"""OSTree-native container images (ostree-ext's format): image references, OCI layouts, encapsulation of a
commit into layers, and import of such images back into a repository."""
