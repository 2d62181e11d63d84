"""Weight converters: Keras HDF5 and torchvision state dicts <-> Flax checkpoints."""
