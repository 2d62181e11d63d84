"""What every entry point shares: processes, atomic files, host memory, XLA flags."""
