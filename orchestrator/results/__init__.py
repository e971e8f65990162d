"""Results: the one reader of run folders, aggregation and statistics, the table model, rendering, report."""
