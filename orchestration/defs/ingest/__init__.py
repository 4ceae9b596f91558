"""Landing files into raw events, and the calendars derived from events and catalog."""
