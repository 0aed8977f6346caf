"""Care: the queue of people who asked to be contacted, and telling the care team."""
