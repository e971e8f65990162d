"""Login-node side of orchestrate: spec, plan, store, launch, collect, tables. No torch here."""
