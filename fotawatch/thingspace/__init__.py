"""The ThingSpace edge: wire parsing (pure), and later OAuth/M2M auth and the HTTP client."""
