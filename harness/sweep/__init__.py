"""`commbench sweep`: a scenario at several offered rates, and the highest rate within an objective."""
