"""Representation analysis: CCA family kernels, similarity, figures."""
