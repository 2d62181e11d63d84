"""Weight files in and out: Keras HDF5 (both ways) and torchvision state dicts."""
