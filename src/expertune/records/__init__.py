"""What OUTPUT_DIR holds, named and read in one place (train/ writes, evaluate/ reads)."""
