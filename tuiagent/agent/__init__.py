"""The agent: loop, events, tools, routing, compression. No Textual here."""
