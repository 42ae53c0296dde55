"""Policy engines: implementations of `search_strategies.protocols.Policy`."""
