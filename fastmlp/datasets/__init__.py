"""Data files shipped with the package (MNIST, see mnist/README.md)."""
