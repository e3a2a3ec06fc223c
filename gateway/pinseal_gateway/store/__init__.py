"""The gateway's durable state, one SQLite database: every durability rule of the gateway lives here."""
