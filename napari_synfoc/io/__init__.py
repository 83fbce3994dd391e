"""Qt-free readers, writers and sample data (SimpleITK, PIL)."""
