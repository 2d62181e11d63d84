"""Flax NNX models: the Keras-layout ResNet50 and its torchvision variant."""
