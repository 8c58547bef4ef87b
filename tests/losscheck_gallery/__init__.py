"""Deliberately wrong GAN losses, written as users write them in each framework (one module per
framework, imported only when its framework is installed). Every function name is a gallery
entry of tests/test_losscheck_gallery.py, which states the diagnosis each must get."""
