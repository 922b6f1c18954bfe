"""Event schemas: each CloudEvent type name bound to its payload Struct, grouped by function."""
