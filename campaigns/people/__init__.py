"""One person, for the care team: finding them (search), everything held on them
(records, profile, export), what staff may do to their courses (actions), and erasing
them at their request (erasure)."""
