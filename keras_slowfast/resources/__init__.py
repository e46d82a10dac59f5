"""Package data: class-name lists."""
