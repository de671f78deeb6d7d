"""The programs' rules as data: program files, their model, calendars, storms, the planner."""
